//! Deterministic simulation of phx-proto clients against the server model over a faulty
//! network (`phx_tests::sim`).
//!
//! `PHX_SIM_SEED=N` replays one seed of the sweep and prints its transcript;
//! `PHX_SIM_SEEDS=N` and `PHX_SIM_START=S` change the sweep (2,000 seeds from 0 by default).
//! For long soaks use the `phx-sim` binary.

use std::time::{Duration, Instant};

use phx_proto::ChannelState;
use phx_tests::sim::{self, Fault, RunReport, SEED_ENV, Sim, SimOptions};
use serde_json::json;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The tail of a transcript, for failure messages.
fn tail(transcript: &str, lines: usize) -> String {
    let all: Vec<&str> = transcript.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn report_failure(report: &RunReport) -> String {
    let Err(failure) = &report.result else {
        return String::new();
    };
    // Replay with the transcript on: the same seed fails the same way.
    let replay = sim::run_seed(report.seed, true);
    let transcript = replay.transcript.unwrap_or_default();
    format!(
        "{failure}\n--- last transcript lines of seed {} (the replay command prints all {}) ---\n{}",
        report.seed,
        transcript.lines().count(),
        tail(&transcript, 80)
    )
}

#[test]
fn random_runs_keep_every_invariant() {
    if let Some(seed) = env(SEED_ENV) {
        let report = sim::run_seed(seed, true);
        println!("{}", report.transcript.as_deref().unwrap_or_default());
        match &report.result {
            Ok(()) => println!("seed {seed}: ok ({:?})", report.stats),
            Err(f) => panic!("{f}"),
        }
        return;
    }
    let start = env("PHX_SIM_START").unwrap_or(0);
    let count = env("PHX_SIM_SEEDS").unwrap_or(2000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let began = Instant::now(); // wall time, for the rate printed below; never inside a run
    let mut failures: Vec<RunReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (start + t..start + count)
                        .step_by(threads as usize)
                        .map(|seed| sim::run_seed(seed, false))
                        .filter(|r| r.result.is_err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a sweep thread panicked outside a run"))
            .collect()
    });
    let took = began.elapsed();
    println!(
        "{count} seeds from {start} in {took:.1?} ({:.0} seeds/s on {threads} threads)",
        count as f64 / took.as_secs_f64()
    );
    failures.sort_by_key(|r| r.seed);
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|r| r.seed).collect();
        panic!(
            "{} of {count} seeds failed: {seeds:?}\n{}",
            failures.len(),
            report_failure(first)
        );
    }
}

#[test]
fn same_seed_gives_the_same_transcript_byte_for_byte() {
    for seed in [3, 17] {
        let epoch = Instant::now();
        let mut a = Sim::with_epoch(SimOptions::random(seed).trace(true), epoch);
        let mut b = Sim::with_epoch(SimOptions::random(seed).trace(true), epoch + secs(86_400));
        let ra = a.run_plan();
        let rb = b.run_plan();
        assert_eq!(ra, rb);
        assert!(ra.is_ok(), "{ra:?}");
        let (ta, tb) = (a.take_transcript().unwrap(), b.take_transcript().unwrap());
        assert!(ta.lines().count() > 200, "a short run: {ta}");
        assert!(ta.contains("chaos") && ta.contains("> n") && ta.contains("event "));
        if ta != tb {
            let line = ta.lines().zip(tb.lines()).position(|(x, y)| x != y);
            panic!("seed {seed}: transcripts differ from line {line:?}");
        }
        assert_eq!(a.stats(), b.stats());
    }
    let other = sim::run_seed(4, true).transcript.unwrap();
    assert_ne!(other, sim::run_seed(3, true).transcript.unwrap());
}

#[test]
fn half_open_connection_is_detected_within_two_heartbeat_intervals() {
    let mut opts = SimOptions::scripted(11, 1);
    opts.clients[0].heartbeat_interval = secs(5);
    let mut sim = Sim::new(opts);
    sim.connect(0).unwrap();
    let room = sim.join(0, "room:a").unwrap().unwrap();
    assert!(
        sim.run_until(|s| s.is_joined(0, "room:a"), secs(5))
            .unwrap()
    );
    // Mid-interval: a heartbeat has been answered at 5 s, the next is due at 10 s.
    sim.run_for(secs(7) + Duration::from_millis(300)).unwrap();
    let conn = sim.client_connection(0).unwrap();
    let half_open_at = sim.elapsed();
    sim.fault(Fault::HalfOpen { client: 0 }).unwrap();
    // A push in flight on the dead connection fails once the connection is declared dead.
    let push = sim.push(0, room, "noreply", &json!({})).unwrap();
    assert!(push.is_some());
    assert!(
        sim.run_until(|s| s.client_connection(0) != Some(conn), secs(30))
            .unwrap(),
        "never noticed"
    );
    let (closed_at, code, reason) = sim.last_close(0).unwrap();
    assert_eq!((code, reason), (1000, "heartbeat timeout"));
    let waited = closed_at - half_open_at;
    assert!(waited <= secs(10), "detected after {waited:?}");
    assert!(
        waited > secs(5),
        "detected after {waited:?}, before the heartbeat deadline"
    );
    // And the channel comes back on a new connection.
    assert!(
        sim.run_until(|s| s.is_joined(0, "room:a"), secs(5))
            .unwrap()
    );
    assert_eq!(sim.client(0).stats().heartbeat_timeouts, 1);
    sim.finish().unwrap();
}

#[test]
fn server_restart_heals_every_channel_and_presence() {
    let mut sim = Sim::new(SimOptions::scripted(12, 2));
    for i in 0..2 {
        sim.connect(i).unwrap();
        for topic in ["room:a", "presence:x"] {
            sim.join(i, topic).unwrap().unwrap();
        }
    }
    let joined = |s: &Sim| (0..2).all(|i| s.is_joined(i, "room:a") && s.is_joined(i, "presence:x"));
    assert!(sim.run_until(joined, secs(5)).unwrap());
    sim.settle(secs(10)).unwrap();
    assert_eq!(
        sim.server().presence_list("presence:x"),
        json!({
            "alice": {"metas": [sim.server().presence_list("presence:x")["alice"]["metas"][0].clone()]},
            "bob": {"metas": [sim.server().presence_list("presence:x")["bob"]["metas"][0].clone()]},
        })
    );
    let joins_before = sim.server().joins("room:a");
    sim.fault(Fault::RestartServer).unwrap();
    assert!(
        sim.server()
            .presence_list("presence:x")
            .as_object()
            .unwrap()
            .is_empty()
    );
    // Both clients see the reset, reconnect on the backoff and rejoin both channels.
    assert!(sim.run_until(|s| !joined(s), secs(1)).unwrap());
    assert!(sim.run_until(joined, secs(5)).unwrap());
    sim.settle(secs(10)).unwrap(); // also compares every presence view with the server's
    assert_eq!(sim.server().joins("room:a"), joins_before + 2);
    assert_eq!(
        sim.server()
            .presence_list("presence:x")
            .as_object()
            .unwrap()
            .len(),
        2
    );
    for i in 0..2 {
        let p = sim.client(i);
        let id = p.channel_by_topic("presence:x").unwrap();
        assert_eq!(p.channel(id).unwrap().presence().unwrap().len(), 2);
    }
    sim.finish().unwrap();
}

#[test]
fn crashed_channel_rejoins_on_the_rejoin_schedule() {
    let mut sim = Sim::new(SimOptions::scripted(13, 1));
    sim.connect(0).unwrap();
    sim.join(0, "room:b").unwrap().unwrap();
    assert!(
        sim.run_until(|s| s.is_joined(0, "room:b"), secs(5))
            .unwrap()
    );
    sim.fault(Fault::CrashChannel {
        topic: "room:b".into(),
    })
    .unwrap();
    assert!(
        sim.run_until(|s| !s.is_joined(0, "room:b"), secs(1))
            .unwrap()
    );
    let errored_at = sim.elapsed();
    assert_eq!(
        sim.channel_states(0),
        [("room:b".to_owned(), ChannelState::Errored)]
    );
    assert!(
        sim.run_until(|s| s.is_joined(0, "room:b"), secs(5))
            .unwrap()
    );
    // phoenix.js's first rejoin delay is 1 s; the join then takes a round trip.
    let took = sim.elapsed() - errored_at;
    assert!(took >= secs(1) && took < secs(2), "rejoined after {took:?}");
    sim.finish().unwrap();
}

#[test]
fn forged_frames_change_nothing() {
    let mut sim = Sim::new(SimOptions::scripted(14, 1));
    sim.connect(0).unwrap();
    for topic in ["room:a", "room:b", "presence:y"] {
        sim.join(0, topic).unwrap().unwrap();
    }
    assert!(
        sim.run_until(|s| s.is_joined(0, "presence:y"), secs(5))
            .unwrap()
    );
    for _ in 0..50 {
        sim.fault(Fault::Hostile {
            client: 0,
            count: 4,
        })
        .unwrap();
        sim.run_for(Duration::from_millis(200)).unwrap();
    }
    let stats = sim.client(0).stats();
    assert!(stats.invalid_frames + stats.unknown_refs + stats.unknown_topics + stats.stale > 100);
    assert_eq!(stats.messages, 0);
    sim.settle(secs(10)).unwrap();
    sim.finish().unwrap();
}

#[test]
fn failures_name_the_seed_and_the_replay_command() {
    let f = sim::Failure {
        seed: 1234,
        elapsed: Duration::from_millis(12_345),
        message: "push 7 ended a second time".into(),
    };
    let text = f.to_string();
    assert!(text.contains("seed 1234 failed at +  12.345000s: push 7 ended a second time"));
    assert!(
        text.contains(
            "replay: PHX_SIM_SEED=1234 cargo test -p phx-tests --test sim -- --nocapture"
        )
    );
}
