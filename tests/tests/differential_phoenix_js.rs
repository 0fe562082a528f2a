//! Differential test against the official JavaScript client: phoenix.js 1.8.16 (under node,
//! `tests/js/differential.js`) and phx-tokio run the same scenario, each against its own
//! bundled test server recording every frame the client sent. The two recordings must match,
//! frame by frame and in order, once refs are normalized: each distinct `ref`/`join_ref` value
//! is replaced by its rank of first appearance (per socket), because phoenix.js draws refs
//! from one counter that also numbers its callback registrations (its refs start at "5" and
//! skip values) while phx numbers only what it sends.
//!
//! # The scenario, and what is compared
//!
//! Compared frame for frame, because there the official client does what PROTOCOL.md calls
//! correct (the main socket, five connections):
//!
//! 1. join of `room:diff` with params, `join_ref` equal to the join's `ref`;
//! 2. pushes answered `ok`, `error` and with a custom status;
//! 3. a binary push (a V2 binary frame, compared byte for byte) and a JSON push that gets a
//!    binary reply;
//! 4. channel crash: the crashing push, a push made before the rejoin (held back until the
//!    rejoin's reply, then stamped with the new join_ref), the rejoin after `phx_error` with a
//!    new join_ref, a push after it;
//! 5. `phx_close` from a stopped channel (`room:stop`): no rejoin; a new join of the topic
//!    with a new join_ref, a push, a leave;
//! 6. a second channel (`room:two`): after each reconnect below, both channels rejoin, in
//!    creation order, each with a new join_ref;
//! 7. server restart (connections end without a close frame): reconnect, rejoins, a push;
//! 8. dropped connection while handshakes are refused: a push with a 50 ms timeout that
//!    expires in the buffer (never sent), one push per channel made while reconnecting (each
//!    sent after its channel's rejoin reply, with the new join_ref), then the rejoins;
//! 9. a `disconnect` broadcast (server close 1001): reconnect, rejoins, a push;
//! 10. heartbeats left unanswered: the client's heartbeat timeout, reconnect, rejoins;
//! 11. leave of both channels (`phx_leave` with the current join_ref), the join of `room:last`.
//!
//! Heartbeats (an interval of 300 ms on both clients) are sent on a timer, so where they fall
//! between channel frames depends on timing. They are taken out of the sequence and checked on
//! their own: every one is `[null, ref, "phoenix", "heartbeat", {}]` with a ref used by no
//! other frame, and both clients sent at least one on the first and the last connection (each
//! scenario waits for a heartbeat reply there).
//!
//! # Deliberate differences, asserted explicitly
//!
//! These flows are not compared; each side's frames are asserted as they should differ:
//!
//! - `disconnect()` with a channel joined (README, "Differences from phoenix.js"): phx sends
//!   `phx_leave` for `room:last` before closing; phoenix.js just closes. So phx's last
//!   connection has one more frame at its end, checked on its own.
//! - A first join the server refuses (README, same table), on a second socket: phoenix.js
//!   retries it on the rejoin schedule (the scenario lets it retry once) and its `leave()`
//!   then sends `phx_leave`; phx sends the join once, the join fails, and nothing follows.
//! - A server close with 1000, on that second socket: both clients reconnect and rejoin
//!   (phoenix.js 1.8.16 after every close it did not start; phx by default, see
//!   `reconnect_on_normal_close`). The rejoin connection is compared; phx's documented
//!   `phx_leave` at `disconnect()` ends it.
//!
//! Not exercised: `leave()` while disconnected and joins or leaves left in the send buffer
//! across a reconnect (phx sends nothing stale; phoenix.js 1.8.16 drops outdated buffered
//! frames by its own rule), a join that gets no reply (the test server answers every join at
//! once), and the duplicate join of a live topic (refused locally by phx).

mod js_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use phx_proto::Frame;
use phx_tests::server::ws::TestServer;
use phx_tests::server::{ConnId, ServerConfig};
use phx_tokio::{
    Backoff, CloseReason, DisconnectReason, Event, JoinError, Payload, PushError, PushFailure,
    Socket,
};
use serde_json::{Value, json};

/// Same as `HEARTBEAT_MS` in `tests/js/differential.js`.
const HEARTBEAT: Duration = Duration::from_millis(300);
/// Generous: only a broken run gets near it.
const WAIT: Duration = Duration::from_secs(10);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------------ phx's half

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("phx: timed out after {WAIT:?} waiting for {what}"),
    }
}

async fn wait_event(
    events: &mut phx_tokio::Events,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match events.next().await {
                Some(Ok(e)) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("phx: the event stream ended waiting for {what}"),
            }
        }
    })
    .await
}

fn builder(server: &TestServer) -> phx_tokio::Builder {
    Socket::builder(&server.url())
        .param("token", "secret")
        .heartbeat(HEARTBEAT)
        .timeout(Duration::from_secs(10))
        .rejoin(Backoff::Schedule {
            delays: vec![ms(20)],
            jitter: 0.0,
        })
        .reconnect(Backoff::Schedule {
            delays: vec![ms(20)],
            jitter: 0.0,
        })
}

async fn ctl(server: &TestServer, command: &str) {
    if let Err(e) = js_support::control(server, command).await {
        panic!("{e}");
    }
}

fn is_rejoin(e: &Event) -> bool {
    matches!(e, Event::Joined { rejoin: true, .. })
}

/// The scenario of `tests/js/differential.js`, step for step, with phx-tokio.
async fn phx_scenario(server: &TestServer) {
    let socket = within("connect", builder(server).connect())
        .await
        .expect("phx connects");
    let mut events = socket.events();

    // join with params
    let (room, reply) = within(
        "join",
        socket
            .channel("room:diff")
            .params(&json!({"user": "alice", "n": 1}))
            .join(),
    )
    .await
    .expect("join");
    assert_eq!(
        reply.decode::<Value>().unwrap(),
        json!({"joined": "room:diff", "params": {"user": "alice", "n": 1}})
    );

    // pushes with ok, error and custom replies
    let ok = within("ping", room.push("ping", &json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(ok.decode::<Value>().unwrap(), json!({"n": 1}));
    match within("error_reply", room.push("error_reply", &json!({}))).await {
        Err(PushError::Rejected(r)) => assert_eq!(r.status, "error"),
        other => panic!("phx: error_reply answered {other:?}"),
    }
    match within(
        "custom_status",
        room.push("custom_status", &json!({"x": 2})),
    )
    .await
    {
        Err(PushError::Rejected(r)) => assert_eq!(r.status, "custom"),
        other => panic!("phx: custom_status answered {other:?}"),
    }

    // binary push and binary replies
    let r = within(
        "binary bin",
        room.push_binary("bin", vec![1u8, 2, 3, 0, 255]),
    )
    .await
    .unwrap();
    assert_eq!(r.response.as_bytes().as_ref(), &[1, 2, 3, 0, 255]);
    let r = within("JSON bin", room.push("bin", &json!({"json": "in"})))
        .await
        .unwrap();
    assert_eq!(r.response.as_bytes().as_ref(), br#"{"json":"in"}"#);

    // a heartbeat on the first connection
    wait_event(&mut events, "a heartbeat", |e| {
        matches!(e, Event::Heartbeat { .. })
    })
    .await;

    // channel crash, a push while the channel rejoins, then the rejoin
    assert_eq!(
        within("crash", room.push("crash", &json!({}))).await,
        Err(PushError::Failed(PushFailure::ChannelErrored))
    );
    // Made before the rejoin (20 ms later): it waits for the new join.
    let during = within(
        "the push made while rejoining",
        room.push("ping", &json!({"during": "rejoin"})),
    )
    .await
    .unwrap();
    assert_eq!(
        during.decode::<Value>().unwrap(),
        json!({"during": "rejoin"})
    );
    wait_event(&mut events, "the rejoin after the crash", is_rejoin).await;
    ping(&room, json!({"after": "crash"})).await;

    // server stop (phx_close), then a new join of the topic
    let (stopped, _) = within("join room:stop", socket.channel("room:stop").join())
        .await
        .expect("join room:stop");
    assert_eq!(
        within("stop", stopped.push("stop", &json!({}))).await,
        Err(PushError::Failed(PushFailure::ChannelClosed))
    );
    let id = stopped.id();
    wait_event(
        &mut events,
        "phx_close",
        |e| matches!(e, Event::ChannelClosed { channel, .. } if *channel == id),
    )
    .await;
    let (again, _) = within(
        "the new join of room:stop",
        socket.channel("room:stop").join(),
    )
    .await
    .expect("the new join of room:stop");
    ping(&again, json!({"again": true})).await;
    within("leave room:stop", again.leave())
        .await
        .expect("leave room:stop");

    // join a second channel (both rejoin after each reconnect, in creation order)
    let (two, reply) = within(
        "join room:two",
        socket.channel("room:two").params(&json!({"k": 2})).join(),
    )
    .await
    .expect("join room:two");
    assert_eq!(
        reply.decode::<Value>().unwrap(),
        json!({"joined": "room:two", "params": {"k": 2}})
    );

    // server restart, then the reconnect and rejoin
    ctl(server, "restart").await;
    wait_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    wait_event(&mut events, "the rejoin after the restart", is_rejoin).await;
    ping(&room, json!({"after": "restart"})).await;

    // dropped connection, a push while reconnecting, then the rejoin
    ctl(server, "refuse").await;
    ctl(server, "drop").await;
    wait_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    // A push that times out while buffered is never sent.
    let expired = room.push_payload(
        "ping",
        Payload::json(&json!({"expired": 1})).unwrap(),
        Some(ms(50)),
    );
    assert_eq!(
        within("a push timing out in the buffer", expired).await,
        Err(PushError::Timeout)
    );
    let (p1, p2) = (json!({"buffered": 1}), json!({"buffered": 2}));
    let (buffered, buffered2, ()) = within("the pushes made while reconnecting", async {
        futures::join!(room.push("ping", &p1), two.push("ping", &p2), async {
            // The push commands are queued before this one, so the driver has taken them
            // when the stats come back.
            socket.stats().await.expect("stats");
            ctl(server, "accept").await;
        })
    })
    .await;
    assert_eq!(
        buffered.expect("buffered push").decode::<Value>().unwrap(),
        p1
    );
    assert_eq!(
        buffered2.expect("buffered push").decode::<Value>().unwrap(),
        p2
    );
    wait_event(&mut events, "the rejoin after the drop", is_rejoin).await;

    // server disconnect (close 1001), then the reconnect and rejoin
    assert_eq!(
        within("disconnect_me", room.push("disconnect_me", &json!({}))).await,
        Err(PushError::Failed(PushFailure::ConnectionLost))
    );
    wait_event(&mut events, "the server's close", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Transport(CloseReason::Closed { code: 1001, .. }),
                ..
            }
        )
    })
    .await;
    wait_event(&mut events, "the rejoin after the disconnect", is_rejoin).await;
    ping(&room, json!({"after": "1001"})).await;

    // missed heartbeat, then the reconnect and rejoin
    ctl(server, "heartbeats-off").await;
    wait_event(&mut events, "the heartbeat timeout", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
                ..
            }
        )
    })
    .await;
    ctl(server, "heartbeats-on").await;
    wait_event(
        &mut events,
        "the rejoin after the heartbeat timeout",
        is_rejoin,
    )
    .await;
    ping(&room, json!({"after": "heartbeat"})).await;
    wait_event(&mut events, "a heartbeat on the last connection", |e| {
        matches!(e, Event::Heartbeat { .. })
    })
    .await;

    // leave both channels
    within("leave room:two", two.leave())
        .await
        .expect("leave room:two");
    within("leave", room.leave()).await.expect("leave");

    // join another channel, then disconnect
    let (_last, _) = within("join room:last", socket.channel("room:last").join())
        .await
        .expect("join room:last");
    within("disconnect", socket.disconnect())
        .await
        .expect("disconnect");

    // a refused first join on a new socket
    let other = within("connect", builder(server).connect())
        .await
        .expect("phx connects");
    let mut other_events = other.events();
    match within(
        "join room:forbidden",
        other.channel("room:forbidden").join(),
    )
    .await
    {
        Err(JoinError::Rejected(r)) => assert_eq!(
            r.decode::<Value>().unwrap(),
            json!({"reason": "unauthorized"})
        ),
        other => panic!("phx: the join of room:forbidden gave {other:?}"),
    }

    // a server close with 1000: phx reconnects and rejoins, as phoenix.js 1.8.16 does
    let (_side, _) = within("join room:side", other.channel("room:side").join())
        .await
        .expect("join room:side");
    ctl(server, "close-normal").await;
    wait_event(&mut other_events, "the server's close", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Transport(CloseReason::Closed { code: 1000, .. }),
                reconnect_at: Some(_),
                ..
            }
        )
    })
    .await;
    wait_event(
        &mut other_events,
        "the rejoin after the close with 1000",
        |e| matches!(e, Event::Joined { rejoin: true, .. }),
    )
    .await;
    within("disconnect", other.disconnect())
        .await
        .expect("disconnect");
}

async fn ping(channel: &phx_tokio::Channel, payload: Value) {
    let r = within("ping", channel.push("ping", &payload))
        .await
        .unwrap_or_else(|e| panic!("phx: ping {payload} failed: {e}"));
    assert_eq!(r.decode::<Value>().unwrap(), payload);
}

// ------------------------------------------------------------------ recordings

/// One frame a client sent, decoded without the codec under test.
#[derive(Debug, Clone)]
struct Sent {
    binary: bool,
    join_ref: Option<String>,
    ref_: Option<String>,
    topic: String,
    event: String,
    /// The JSON payload, or the hex of a binary one.
    payload: Value,
}

impl Sent {
    fn is_heartbeat(&self) -> bool {
        self.topic == "phoenix" && self.event == "heartbeat"
    }
}

fn text_ref(v: &Value, frame: &str) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("a ref that is neither null nor a string ({other}) in {frame}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Decodes a client frame: a V2 JSON array or a V2 binary push (kind 0, four length bytes).
fn decode(frame: &Frame) -> Sent {
    match frame {
        Frame::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let items: Vec<Value> = serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("a text frame that is not a JSON array ({e}): {text}"));
            let [
                join_ref,
                ref_,
                Value::String(topic),
                Value::String(event),
                payload,
            ] = items.as_slice()
            else {
                panic!("a text frame that is not [join_ref, ref, topic, event, payload]: {text}");
            };
            Sent {
                binary: false,
                join_ref: text_ref(join_ref, &text),
                ref_: text_ref(ref_, &text),
                topic: topic.clone(),
                event: event.clone(),
                payload: payload.clone(),
            }
        }
        Frame::Binary(bytes) => {
            let b = bytes.as_ref();
            let bad = || panic!("a malformed binary frame: {}", hex(b));
            let [0, j, r, t, e, ..] = *b else { bad() };
            let lens = [j, r, t, e].map(usize::from);
            let mut at = 5;
            let mut field = |len: usize| {
                let s = b.get(at..at + len).unwrap_or_else(|| bad());
                at += len;
                String::from_utf8(s.to_vec()).unwrap_or_else(|_| bad())
            };
            let [join_ref, ref_, topic, event] = lens.map(&mut field);
            Sent {
                binary: true,
                // A binary frame has no null: an absent ref is empty.
                join_ref: Some(join_ref).filter(|s| !s.is_empty()),
                ref_: Some(ref_).filter(|s| !s.is_empty()),
                topic,
                event,
                payload: Value::String(hex(&b[at..])),
            }
        }
    }
}

/// Every frame each connection sent, in connection order, skipping connections that sent
/// nothing. Connection ids are handed out per accepted TCP connection, one for each
/// handshake the server decided on, so they run from 1 to accepted + refused.
async fn recording(server: &TestServer) -> Vec<Vec<Sent>> {
    let (accepted, conns) = server
        .call(|s, _| {
            let stats = s.stats();
            let last = stats.connections_accepted + stats.connections_refused;
            let conns: Vec<Vec<Frame>> = (1..=last)
                .map(|id| s.received(ConnId(id)).to_vec())
                .filter(|frames| !frames.is_empty())
                .collect();
            (stats.connections_accepted, conns)
        })
        .await;
    assert_eq!(
        conns.len() as u64,
        accepted,
        "every accepted connection sent frames in this scenario"
    );
    conns
        .iter()
        .map(|frames| frames.iter().map(decode).collect())
        .collect()
}

/// Waits (bounded) until the server has processed every connection's end.
async fn all_closed(server: &TestServer) {
    within("the server to see every connection closed", async {
        while server.open_connections().await > 0 {
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await;
}

/// One socket's connections with refs normalized, heartbeats taken out.
#[derive(Debug)]
struct Normalized {
    /// Per connection: the non-heartbeat frames as
    /// `[kind, join_ref, ref, topic, event, payload]`.
    conns: Vec<Vec<Value>>,
    /// Per connection: how many heartbeats it sent.
    heartbeats: Vec<usize>,
}

/// Normalizes one socket's connections; checks the heartbeats' shape and that their refs are
/// fresh.
fn normalize(who: &str, conns: &[Vec<Sent>]) -> Normalized {
    let mut heartbeat_refs = BTreeSet::new();
    let mut heartbeats = Vec::new();
    for frames in conns {
        let mut n = 0;
        for hb in frames.iter().filter(|f| f.is_heartbeat()) {
            assert!(
                !hb.binary && hb.join_ref.is_none() && hb.payload == json!({}),
                "{who}: a malformed heartbeat {hb:?}"
            );
            let r = hb.ref_.clone().expect("a heartbeat has a ref");
            assert!(
                heartbeat_refs.insert(r.clone()),
                "{who}: heartbeat ref {r} sent twice"
            );
            n += 1;
        }
        heartbeats.push(n);
    }
    let mut rank: BTreeMap<String, usize> = BTreeMap::new();
    let mut norm = |r: &Option<String>| -> Value {
        match r {
            None => Value::Null,
            Some(r) => {
                assert!(
                    !heartbeat_refs.contains(r),
                    "{who}: ref {r} used by a heartbeat and by a channel frame"
                );
                let next = rank.len() + 1;
                Value::String(format!("r{}", *rank.entry(r.clone()).or_insert(next)))
            }
        }
    };
    let conns = conns
        .iter()
        .map(|frames| {
            frames
                .iter()
                .filter(|f| !f.is_heartbeat())
                .map(|f| {
                    let join_ref = norm(&f.join_ref);
                    let ref_ = norm(&f.ref_);
                    json!([
                        if f.binary { "binary" } else { "text" },
                        join_ref,
                        ref_,
                        f.topic,
                        f.event,
                        f.payload
                    ])
                })
                .collect()
        })
        .collect();
    Normalized { conns, heartbeats }
}

fn listing(conns: &[Vec<Value>]) -> String {
    let mut out = String::new();
    for (i, frames) in conns.iter().enumerate() {
        let _ = writeln!(out, "  connection {}:", i + 1);
        for f in frames {
            let _ = writeln!(out, "    {f}");
        }
    }
    out
}

fn events(conn: &[Value]) -> Vec<String> {
    conn.iter()
        .map(|f| {
            format!(
                "{} {}",
                f[3].as_str().unwrap_or("?"),
                f[4].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn phx_sends_what_phoenix_js_sends() {
    js_support::prepare();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let config = || ServerConfig {
            record_frames: true,
            ..ServerConfig::default()
        };
        let (js_server, phx_server) = (
            TestServer::start(config()).await,
            TestServer::start(config()).await,
        );
        let (run, ()) = tokio::join!(
            js_support::run_script("differential.js", &js_server, Duration::from_secs(90)),
            phx_scenario(&phx_server),
        );
        run.assert_success("differential.js");
        all_closed(&js_server).await;
        all_closed(&phx_server).await;
        let js = recording(&js_server).await;
        let phx = recording(&phx_server).await;
        js_server.shutdown().await;
        phx_server.shutdown().await;
        compare(&js, &phx);
    });
}

/// Connections of the main socket: the first, then one after each of the restart, the drop,
/// the 1001 close and the heartbeat timeout. The second socket's follow.
const MAIN_CONNS: usize = 5;

/// `topic event` of each frame the main socket sends on each connection.
const SCENARIO: [&[&str]; MAIN_CONNS] = [
    &[
        "room:diff phx_join",
        "room:diff ping",
        "room:diff error_reply",
        "room:diff custom_status",
        "room:diff bin",
        "room:diff bin",
        "room:diff crash",
        "room:diff phx_join",
        "room:diff ping",
        "room:diff ping",
        "room:stop phx_join",
        "room:stop stop",
        "room:stop phx_join",
        "room:stop ping",
        "room:stop phx_leave",
        "room:two phx_join",
    ],
    &["room:diff phx_join", "room:two phx_join", "room:diff ping"],
    &[
        "room:diff phx_join",
        "room:two phx_join",
        "room:diff ping",
        "room:two ping",
        "room:diff disconnect_me",
    ],
    &["room:diff phx_join", "room:two phx_join", "room:diff ping"],
    &[
        "room:diff phx_join",
        "room:two phx_join",
        "room:diff ping",
        "room:two phx_leave",
        "room:diff phx_leave",
        "room:last phx_join",
    ],
];

fn compare(js: &[Vec<Sent>], phx: &[Vec<Sent>]) {
    assert!(
        js.len() == MAIN_CONNS + 2 && phx.len() == MAIN_CONNS + 2,
        "expected {} connections from each client, got {} and {}:\n\
         phoenix.js:\n{js:#?}\nphx:\n{phx:#?}",
        MAIN_CONNS + 2,
        js.len(),
        phx.len()
    );
    let js_main = normalize("phoenix.js", &js[..MAIN_CONNS]);
    let phx_main = normalize("phx", &phx[..MAIN_CONNS]);
    let js_other = normalize("phoenix.js", &js[MAIN_CONNS..]);
    let phx_other = normalize("phx", &phx[MAIN_CONNS..]);
    let both = format!(
        "phoenix.js sent:\n{}phx sent:\n{}",
        listing(&js_main.conns),
        listing(&phx_main.conns)
    );

    // The recording holds the scenario (guards against two clients that both sent nothing).
    for (i, want) in SCENARIO.iter().enumerate() {
        assert_eq!(
            events(&js_main.conns[i]),
            *want,
            "phoenix.js, connection {}, did not run the scenario:\n{both}",
            i + 1
        );
    }

    // Heartbeats: both clients sent them where the scenarios waited for one.
    for (who, n) in [("phoenix.js", &js_main), ("phx", &phx_main)] {
        assert!(
            n.heartbeats[0] >= 1 && n.heartbeats[MAIN_CONNS - 1] >= 1,
            "{who} sent heartbeats {:?} per connection; expected some on the first and last",
            n.heartbeats
        );
    }

    // Documented difference: disconnect() sends phx_leave for the joined room:last in phx.
    let mut phx_conns = phx_main.conns.clone();
    let last = phx_conns[MAIN_CONNS - 1].pop();
    let last_join = phx_conns[MAIN_CONNS - 1].last().cloned();
    match (&last, &last_join) {
        (Some(leave), Some(join)) => {
            assert_eq!(
                (&leave[0], &leave[1], &leave[3], &leave[4], &leave[5]),
                (
                    &json!("text"),
                    &join[1],
                    &json!("room:last"),
                    &json!("phx_leave"),
                    &json!({})
                ),
                "phx's disconnect() sends phx_leave for the joined channel, with its join_ref:\n{both}"
            );
            assert!(
                leave[2].is_string() && leave[2] != join[2],
                "the leave has a ref of its own: {leave}"
            );
        }
        _ => panic!("phx's last connection is too short:\n{both}"),
    }

    // The compared flows: identical frames, in order.
    for (i, (a, b)) in js_main.conns.iter().zip(&phx_conns).enumerate() {
        if a != b {
            let at = a.iter().zip(b.iter()).position(|(x, y)| x != y);
            let what = match at {
                Some(k) => format!(
                    "first difference at frame {}: phoenix.js {} / phx {}",
                    k + 1,
                    a[k],
                    b[k]
                ),
                None => format!("{} frames from phoenix.js, {} from phx", a.len(), b.len()),
            };
            panic!(
                "connection {}: phx's frames differ from phoenix.js's ({what}); \
                 (phx's last frame, the documented phx_leave at disconnect, is left out)\n{both}",
                i + 1
            );
        }
    }

    // The second socket. A refused first join (documented difference): phoenix.js retried it
    // once (then the scenario left it, and its leave() sent phx_leave); phx sent it once and
    // gave up. A server close with 1000: both reconnected and rejoined room:side, and phx's
    // disconnect() left it (documented difference).
    let join = |topic: &str, r: &str| json!(["text", r, r, topic, "phx_join", {}]);
    assert_eq!(
        js_other.conns,
        [
            vec![
                join("room:forbidden", "r1"),
                join("room:forbidden", "r2"),
                json!(["text", "r2", "r3", "room:forbidden", "phx_leave", {}]),
                join("room:side", "r4"),
            ],
            vec![join("room:side", "r5")],
        ],
        "phoenix.js: a refused join is retried and leave() sends phx_leave; a close with 1000 \
         is followed by a reconnect and a rejoin"
    );
    assert_eq!(
        phx_other.conns,
        [
            vec![join("room:forbidden", "r1"), join("room:side", "r2")],
            vec![
                join("room:side", "r3"),
                json!(["text", "r3", "r4", "room:side", "phx_leave", {}]),
            ],
        ],
        "phx: a refused first join is sent once; a close with 1000 is followed by a \
         reconnect and a rejoin; disconnect() leaves"
    );
}
