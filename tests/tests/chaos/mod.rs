//! Chaos scenarios over real sockets, generic over the client runtime: the client talks to the
//! test server through [`phx_tests::chaos::ChaosProxy`].

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures::StreamExt;
use phx_client::{Backoff, DisconnectReason, Event, Runtime, Socket};
use phx_tests::chaos::{ChaosProxy, Fault};
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
pub use phx_tests::support::{sleep, wait_event, within};
use serde_json::json;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// How many restarts the restart run does: 100 in CI, `PHX_CHAOS_RESTARTS` for a long run.
pub fn restarts() -> u64 {
    std::env::var("PHX_CHAOS_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

pub fn builder<R: Runtime + Default>(url: &str, heartbeat: Duration) -> phx_client::Builder<R> {
    Socket::<R>::builder(url)
        .secret_param("token", "secret")
        .heartbeat(heartbeat)
        .timeout(MS(3000))
        .connect_timeout(MS(500))
        .reconnect(Backoff::Schedule {
            delays: vec![MS(10), MS(20), MS(50)],
            jitter: 0.0,
        })
        .rejoin(Backoff::Schedule {
            delays: vec![MS(50)],
            jitter: 0.0,
        })
        .rng_seed(7)
}

/// Outcome counts of one restart round.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    pub pushes: u64,
    pub ok: u64,
    pub failed: u64,
}

/// `rounds` server restarts with `channels` joined channels and one push per channel in flight
/// at each restart. After each: every channel rejoins and every push has ended exactly once.
/// `heap` is called after each round with its number (for the caller's heap measurement).
pub async fn restart_run<R: Runtime + Default>(
    rounds: u64,
    channels: usize,
    mut heap: impl FnMut(u64),
) -> Round {
    let h = BackgroundServer::start(ServerConfig {
        max_channels_per_transport: channels + 10,
        ..ServerConfig::default()
    });
    let socket = builder::<R>(&h.url(), Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut events = socket.events();
    let mut chans = Vec::new();
    for i in 0..channels {
        let (c, _) = socket.channel(format!("room:c{i}")).join().await.unwrap();
        chans.push(c);
    }
    let mut total = Round::default();
    for round in 1..=rounds {
        // One push per channel in flight (half answered at once, half after 20 ms), then a
        // restart.
        let pushes = futures::future::join_all(chans.iter().enumerate().map(|(i, c)| {
            let c = c.clone();
            async move {
                let (event, body) = if i % 2 == 0 {
                    ("ping", json!({"i": i}))
                } else {
                    ("slow", json!({"ms": 20}))
                };
                c.push_payload(event, phx_client::Payload::json(&body).unwrap(), None)
                    .await
            }
        }));
        let restart = async {
            sleep::<R>(MS(5)).await;
            h.restart().await;
        };
        let (results, ()) = within::<R, _>(MS(10_000), "pushes to end", async {
            futures::join!(pushes, restart)
        })
        .await;
        total.pushes += results.len() as u64;
        for r in &results {
            match r {
                Ok(_) => total.ok += 1,
                Err(e) => {
                    assert!(
                        e.is_ambiguous(),
                        "round {round}: unexpected push error {e:?}"
                    );
                    total.failed += 1;
                }
            }
        }
        // Each push's future resolves once by construction; what this run can check is that
        // every push ended (within the deadline above), with an allowed outcome, and that the
        // core holds nothing pending afterwards (below). The core's own exactly-once rule is
        // asserted after every step by the model proptest and the simulation.
        let mut rejoined = 0;
        while rejoined < channels {
            if let Event::Joined { rejoin: true, .. } =
                wait_event::<R>(&mut events, MS(10_000), "rejoins", |e| {
                    matches!(e, Event::Joined { rejoin: true, .. })
                })
                .await
            {
                rejoined += 1;
            }
        }
        let stats = socket.stats().await.unwrap();
        assert_eq!(stats.channels.joined, channels, "round {round}: all joined");
        assert_eq!(
            stats.pushes_pending, 0,
            "round {round}: nothing left pending"
        );
        heap(round);
    }
    socket.disconnect().await.unwrap();
    total
}

/// A blackholed (half-open) connection is detected within two heartbeat intervals; the socket
/// reconnects once the link heals and every channel rejoins.
pub async fn blackhole_is_detected_within_two_heartbeats<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let proxy = ChaosProxy::start(h.addr());
    let interval = MS(250);
    let socket = builder::<R>(&proxy.url("/socket"), interval)
        .connect()
        .await
        .unwrap();
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    wait_event::<R>(&mut events, MS(2000), "a heartbeat reply", |e| {
        matches!(e, Event::Heartbeat { .. })
    })
    .await;
    let rt = R::default();
    proxy.set(Fault::Blackhole);
    let started = rt.now();
    wait_event::<R>(&mut events, MS(3000), "half-open detection", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
                ..
            }
        )
    })
    .await;
    let detected = rt.now() - started;
    println!(
        "half-open link detected {detected:?} after the blackhole began (interval {interval:?})"
    );
    assert!(
        detected <= 2 * interval + MS(100),
        "half-open link detected after {detected:?} (> 2 x {interval:?})"
    );
    // Still black: new attempts time out. Then the link heals.
    sleep::<R>(MS(300)).await;
    proxy.set(Fault::None);
    wait_event::<R>(&mut events, MS(5000), "rejoin after healing", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
    let stats = socket.stats().await.unwrap();
    assert_eq!(stats.heartbeat_timeouts, 1);
}

/// Latency and a slow link: everything still arrives, in order.
pub async fn delayed_and_throttled_links_still_deliver<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let proxy = ChaosProxy::start(h.addr());
    let socket = builder::<R>(&proxy.url("/socket"), Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    proxy.set(Fault::Delay(MS(30)));
    let r = within::<R, _>(
        MS(3000),
        "delayed ping",
        lobby.push("ping", &json!({"d": 1})),
    )
    .await;
    assert!(r.unwrap().is_ok());
    proxy.set(Fault::Throttle {
        bytes_per_sec: 50_000,
    });
    let mut messages = lobby.messages();
    let r = lobby.push("flood", &json!({"n": 500})).await.unwrap();
    assert!(r.is_ok());
    for i in 1..=500u64 {
        let m = within::<R, _>(MS(5000), "throttled flood", messages.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.payload.decode::<serde_json::Value>().unwrap()["i"], i);
    }
    proxy.set(Fault::None);
}

/// Cut connections and refused connects: the socket keeps coming back.
pub async fn cuts_and_refusals_heal<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let proxy = ChaosProxy::start(h.addr());
    let socket = builder::<R>(&proxy.url("/socket"), Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    for _ in 0..5 {
        proxy.refuse(true);
        proxy.cut();
        wait_event::<R>(&mut events, MS(3000), "cut", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
        sleep::<R>(MS(100)).await;
        proxy.refuse(false);
        wait_event::<R>(&mut events, MS(5000), "rejoin", |e| {
            matches!(e, Event::Joined { rejoin: true, .. })
        })
        .await;
        assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
    }
    assert_eq!(proxy.open_connections(), 1);
}

/// One `#[test]` per fault scenario, run by `$run` on the runtime `$rt`.
#[macro_export]
macro_rules! chaos_suite {
    ($rt:ty, $run:path) => {
        $crate::chaos_suite!(@tests $rt, $run,
            blackhole_is_detected_within_two_heartbeats,
            delayed_and_throttled_links_still_deliver,
            cuts_and_refusals_heal,
        );
    };
    (@tests $rt:ty, $run:path, $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $run(chaos::$name::<$rt>());
            }
        )+
    };
}
