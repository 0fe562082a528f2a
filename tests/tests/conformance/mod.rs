//! The adapter conformance suite: every behaviour of the core that is visible over a real
//! socket, written once, generic over the runtime, and run against the bundled test server by
//! `conformance_tokio.rs`, `conformance_async_std.rs` (and a smol check).
//!
//! The server runs on its own tokio runtime thread, so the suite does not care which runtime
//! drives the client. Intervals are short (heartbeats of 300 ms, rejoins after 50 ms) so the
//! suite runs in seconds on real time.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use phx_client::{
    Backoff, Builder, Channel, ConnectError, DisconnectReason, Event, JoinError, Lagged, Payload,
    PushError, PushFailure, Reply, Runtime, Socket,
};
use phx_proto::{ChannelClosed, ChannelError, CloseReason, V1Json};
use phx_tests::server::ws::BackgroundServer;
use phx_tests::server::{ConnectAuth, PresenceOrder, ServerConfig};
pub use phx_tests::support::{read_messages, sleep, wait_event, within};
use serde_json::{Value, json};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The bundled test server, on a tokio runtime thread of its own.
pub type Harness = BackgroundServer;

fn builder<R: Runtime + Default>(h: &Harness) -> Builder<R> {
    Socket::<R>::builder(&h.url())
        .secret_param("token", "secret")
        .heartbeat(MS(300))
        .timeout(MS(2000))
        .rejoin(Backoff::Schedule {
            delays: vec![MS(50)],
            jitter: 0.0,
        })
        .reconnect(Backoff::Schedule {
            delays: vec![MS(20), MS(50), MS(100)],
            jitter: 0.0,
        })
        .rng_seed(1)
}

async fn connect<R: Runtime + Default>(h: &Harness) -> Socket<R> {
    within::<R, _>(MS(5000), "connect", builder::<R>(h).connect())
        .await
        .expect("connects to the test server")
}

// ------------------------------------------------------------------ scenarios

/// Join with params, a reply with the server's response, ok/error/custom replies to pushes.
pub async fn join_push_and_replies<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let (lobby, reply) = socket
        .channel("room:lobby")
        .params(&json!({"user": "alice"}))
        .join()
        .await
        .unwrap();
    assert_eq!(
        reply.decode::<Value>().unwrap(),
        json!({"joined": "room:lobby", "params": {"user": "alice"}})
    );
    let ok = lobby.push("ping", &json!({"n": 1})).await.unwrap();
    assert!(ok.is_ok());
    assert_eq!(ok.decode::<Value>().unwrap(), json!({"n": 1}));
    match lobby.push("error_reply", &json!({})).await {
        Err(PushError::Rejected(r)) => {
            assert_eq!(r.status, "error");
            assert_eq!(r.decode::<Value>().unwrap(), json!({"reason": "nope"}));
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    match lobby.push("custom_status", &json!({"x": 2})).await {
        Err(PushError::Rejected(r)) => assert_eq!(r.status, "custom"),
        other => panic!("expected a custom status, got {other:?}"),
    }
    // Many pushes in flight at once: each reply resolves exactly its push.
    let pushes = (0..50).map(|i| {
        let lobby = lobby.clone();
        async move { lobby.push("ping", &json!({"i": i})).await }
    });
    let replies = futures::future::join_all(pushes).await;
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(r.unwrap().decode::<Value>().unwrap(), json!({"i": i}));
    }
}

/// A broadcast reaches every socket joined to the topic, and only them.
pub async fn broadcast_reaches_every_joiner<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let a = connect::<R>(&h).await;
    let b = connect::<R>(&h).await;
    let (ca, _) = a.channel("room:party").join().await.unwrap();
    let (cb, _) = b.channel("room:party").join().await.unwrap();
    let (other, _) = b.channel("room:other").join().await.unwrap();
    let (mut ma, mut mb, mut mo) = (ca.messages(), cb.messages(), other.messages());
    ca.cast("shout", &json!({"body": "hi all"})).await.unwrap();
    for m in [&mut ma, &mut mb] {
        let msg = within::<R, _>(MS(2000), "broadcast", m.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.event, "shout");
        assert_eq!(
            msg.payload.decode::<Value>().unwrap(),
            json!({"body": "hi all"})
        );
    }
    let stray = futures::select_biased! {
        m = mo.next().fuse() => Some(m),
        () = sleep::<R>(MS(200)).fuse() => None,
    };
    assert!(stray.is_none(), "room:other got {stray:?}");
    // Per-event subscription sees only its event; the channel's stream sees everything.
    let mut pushes_only = ca.on("push_me_evt");
    ca.push(
        "push_me",
        &json!({"event": "other_evt", "payload": {"k": 0}}),
    )
    .await
    .unwrap();
    ca.push(
        "push_me",
        &json!({"event": "push_me_evt", "payload": {"k": 1}}),
    )
    .await
    .unwrap();
    let m = within::<R, _>(MS(2000), "pushed event", pushes_only.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.event, "push_me_evt");
    assert_eq!(m.payload.decode::<Value>().unwrap(), json!({"k": 1}));
    for event in ["other_evt", "push_me_evt"] {
        let m = within::<R, _>(MS(2000), "channel stream", ma.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.event, event);
    }
}

/// The server restarts: the socket reconnects and every channel rejoins (Joined, rejoin: true)
/// and works again.
pub async fn reconnects_and_rejoins_after_server_restart<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let mut chans = Vec::new();
    for i in 0..5 {
        let (c, _) = socket.channel(format!("room:{i}")).join().await.unwrap();
        chans.push(c);
    }
    for round in 0..3u64 {
        h.restart().await;
        wait_event::<R>(&mut events, MS(3000), "disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
        let mut rejoined = BTreeSet::new();
        while rejoined.len() < chans.len() {
            if let Event::Joined {
                channel,
                rejoin: true,
                ..
            } = wait_event::<R>(&mut events, MS(5000), "rejoins", |e| {
                matches!(e, Event::Joined { rejoin: true, .. })
            })
            .await
            {
                rejoined.insert(channel);
            }
        }
        for c in &chans {
            let r = c.push("ping", &json!({"round": round})).await.unwrap();
            assert_eq!(r.decode::<Value>().unwrap(), json!({"round": round}));
        }
        for i in 0..5 {
            assert_eq!(h.joins(&format!("room:{i}")).await, round + 2);
        }
    }
}

/// The server stops answering heartbeats: the connection is declared dead within two
/// intervals, closed, and the socket reconnects once heartbeats are answered again.
pub async fn detects_a_missed_heartbeat<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    wait_event::<R>(&mut events, MS(2000), "a heartbeat", |e| {
        matches!(e, Event::Heartbeat { .. })
    })
    .await;
    h.stop_heartbeat_replies().await;
    let rt = R::default();
    let stopped = rt.now();
    wait_event::<R>(&mut events, MS(2000), "heartbeat timeout", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
                ..
            }
        )
    })
    .await;
    let detected = rt.now() - stopped;
    println!("missed heartbeat detected {detected:?} after replies stopped (interval 300ms)");
    assert!(
        detected <= MS(2 * 300 + 150),
        "detected after {detected:?}, more than two intervals"
    );
    h.resume_heartbeat_replies().await;
    wait_event::<R>(&mut events, MS(3000), "rejoin", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    assert!(lobby.push("ping", &json!({})).await.is_ok());
    let stats = socket.stats().await.unwrap();
    assert_eq!(stats.heartbeat_timeouts, 1);
    assert!(stats.last_rtt.is_some());
}

/// A push with no reply times out; one over a crashed channel fails; the channel rejoins.
pub async fn push_timeout_crash_and_rejoin<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let r = lobby
        .push_payload("noreply", Payload::empty(), Some(MS(200)))
        .await;
    assert_eq!(r, Err(PushError::Timeout));
    assert!(r.unwrap_err().is_ambiguous());
    // A slow reply within its timeout arrives.
    let slow = lobby
        .push_payload(
            "slow",
            Payload::json(&json!({"ms": 100})).unwrap(),
            Some(MS(1000)),
        )
        .await
        .unwrap();
    assert!(slow.is_ok());
    let crashed = lobby.push("crash", &json!({})).await;
    assert_eq!(crashed, Err(PushError::Failed(PushFailure::ChannelErrored)));
    wait_event::<R>(&mut events, MS(2000), "channel errored", |e| {
        matches!(
            e,
            Event::ChannelErrored {
                reason: ChannelError::Server(_),
                ..
            }
        )
    })
    .await;
    wait_event::<R>(&mut events, MS(2000), "rejoin", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    assert!(lobby.push("ping", &json!({"after": "crash"})).await.is_ok());
}

/// Pushes made before the join completes wait and go out after it, in order.
pub async fn pushes_wait_for_the_join<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h).connect_lazy().unwrap();
    let (lobby, _) = within::<R, _>(MS(3000), "join", socket.channel("room:lobby").join())
        .await
        .unwrap();
    let mut events = socket.events();
    h.restart().await;
    wait_event::<R>(&mut events, MS(3000), "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    // Issued while reconnecting: buffered, then sent after the rejoin, in order.
    let pushes = (0..10).map(|i| {
        let lobby = lobby.clone();
        async move { lobby.push("ping", &json!({"i": i})).await }
    });
    let replies = within::<R, _>(
        MS(5000),
        "buffered pushes",
        futures::future::join_all(pushes),
    )
    .await;
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(r.unwrap().decode::<Value>().unwrap(), json!({"i": i}));
    }
}

/// A join the channel refuses fails with the server's reason, and the topic stays free.
pub async fn join_refused<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    match socket.channel("room:forbidden").join().await {
        Err(JoinError::Rejected(r)) => {
            assert_eq!(
                r.decode::<Value>().unwrap(),
                json!({"reason": "unauthorized"})
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match socket.channel("nope:1").join().await {
        Err(JoinError::Rejected(r)) => {
            assert_eq!(
                r.decode::<Value>().unwrap(),
                json!({"reason": "unmatched topic"})
            )
        }
        other => panic!("expected unmatched topic, got {other:?}"),
    }
    // A second join of a live topic is refused locally.
    let (_lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    assert!(matches!(
        socket.channel("room:lobby").join().await,
        Err(JoinError::Invalid(
            phx_proto::JoinError::AlreadyJoined { .. }
        ))
    ));
}

/// The server stops the channel (phx_close): its stream ends, it is not rejoined.
pub async fn server_close_ends_the_channel<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    lobby.cast("stop", &json!({})).await.unwrap();
    wait_event::<R>(&mut events, MS(2000), "channel closed", |e| {
        matches!(
            e,
            Event::ChannelClosed {
                reason: ChannelClosed::Server,
                ..
            }
        )
    })
    .await;
    assert!(
        within::<R, _>(MS(1000), "stream end", messages.next())
            .await
            .is_none()
    );
    assert!(matches!(
        lobby.push("ping", &json!({})).await,
        Err(PushError::Refused(phx_proto::PushError::UnknownChannel(_)))
    ));
    sleep::<R>(MS(300)).await;
    assert_eq!(h.joins("room:lobby").await, 1);
}

/// Leave waits for the server, ends the stream, refuses later pushes and frees the topic;
/// disconnect closes cleanly and ends what is pending. A stream taken from the channel after it
/// ended (`on`, another `messages()`) ends at once too.
pub async fn clean_leave_and_disconnect<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    lobby.leave().await.unwrap();
    assert!(
        within::<R, _>(MS(1000), "stream end", messages.next())
            .await
            .is_none()
    );
    // A push after the leave is refused at once (phoenix.js would buffer it until its timeout).
    assert!(matches!(
        lobby.push("ping", &json!({})).await,
        Err(PushError::Refused(phx_proto::PushError::UnknownChannel(_)))
    ));
    let (mut later, mut another) = (lobby.on("anything"), lobby.messages());
    assert!(
        within::<R, _>(MS(1000), "a stream taken after the end", later.next())
            .await
            .is_none()
    );
    assert!(
        within::<R, _>(
            MS(1000),
            "another stream taken after the end",
            another.next()
        )
        .await
        .is_none()
    );
    assert!(lobby.leave().await.is_err());
    let (again, _) = socket.channel("room:lobby").join().await.unwrap();
    let pending = {
        let again = again.clone();
        async move {
            again
                .push_payload("noreply", Payload::empty(), Some(MS(10_000)))
                .await
        }
    };
    let (pending, ()) = futures::join!(pending, async {
        sleep::<R>(MS(100)).await;
        socket.disconnect().await.unwrap();
    });
    assert_eq!(pending, Err(PushError::Failed(PushFailure::Disconnected)));
    sleep::<R>(MS(200)).await;
    assert_eq!(h.open_connections().await, 0);
    // Reconnect on demand after a disconnect.
    socket.connect().await.unwrap();
    let (_l, _) = within::<R, _>(
        MS(3000),
        "join after reconnect",
        socket.channel("room:lobby").join(),
    )
    .await
    .unwrap();
}

/// The auth token travels in Sec-WebSocket-Protocol; a wrong one is refused with 403.
pub async fn auth_token_and_refusal<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = Socket::<R>::builder(&h.url())
        .auth_token("secret")
        .connect()
        .await
        .expect("auth token accepted");
    assert!(socket.channel("room:lobby").join().await.is_ok());
    let refused = Socket::<R>::builder(&h.url())
        .auth_token("wrong")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(refused, ConnectError::Refused { status: 403 });
    let no_creds = Socket::<R>::builder(&h.url()).connect().await.unwrap_err();
    assert_eq!(no_creds, ConnectError::Refused { status: 403 });
}

/// Credentials are fetched before every connection attempt, so a reconnect never replays an
/// expired token.
pub async fn credentials_are_refreshed_on_every_connect<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig {
        auth: ConnectAuth::Custom(Arc::new(|info| {
            info.param("token").is_some_and(|t| t.starts_with("fresh-"))
        })),
        ..ServerConfig::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let socket = Socket::<R>::builder(&h.url())
        .rejoin(Backoff::Schedule {
            delays: vec![MS(50)],
            jitter: 0.0,
        })
        .credentials(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, String>(phx_client::Credentials {
                    params: vec![("token".into(), format!("fresh-{n}"))],
                    auth_token: None,
                })
            }
        })
        .connect()
        .await
        .unwrap();
    let mut events = socket.events();
    let (_c, _) = socket.channel("room:lobby").join().await.unwrap();
    h.drop_all().await;
    wait_event::<R>(&mut events, MS(3000), "rejoin", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A failing callback fails the first connect with its message.
    let err = Socket::<R>::builder(&h.url())
        .credentials(|| async { Err::<phx_client::Credentials, _>("vault unreachable") })
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err, ConnectError::Credentials("vault unreachable".into()));
}

/// What each connect sends follows the socket's runtime updates (`set_param`,
/// `set_auth_token`) and the synchronous callbacks (`params_with`, `auth_token_with`), which
/// are called again before every connect: nothing stale is replayed on a reconnect.
pub async fn connect_params_and_token_follow_updates_and_callbacks<R: Runtime + Default>() {
    type Seen = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let h = BackgroundServer::start(ServerConfig {
        auth: ConnectAuth::Custom(Arc::new(move |info| {
            let token = info
                .auth_token
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned());
            log.lock().unwrap().push((
                info.param("who").map(str::to_owned),
                info.param("v").map(str::to_owned),
                token,
                info.header("x-client").map(str::to_owned),
            ));
            true
        })),
        ..ServerConfig::default()
    });
    let seen_by = |who: &str| -> Vec<(Option<String>, Option<String>)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(w, ..)| w.as_deref() == Some(who))
            .map(|(_, v, t, _)| (v.clone(), t.clone()))
            .collect()
    };
    let headers_of = |who: &str| -> Vec<Option<String>> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(w, ..)| w.as_deref() == Some(who))
            .map(|(.., x)| x.clone())
            .collect()
    };
    let fast = |b: Builder<R>| {
        b.reconnect(Backoff::Schedule {
            delays: vec![MS(20)],
            jitter: 0.0,
        })
    };
    let h = &h;
    let reconnected = |socket: Socket<R>| async move {
        let mut events = socket.events();
        h.drop_all().await;
        wait_event::<R>(&mut events, MS(3000), "reconnect", |e| {
            matches!(e, Event::Connected { .. })
        })
        .await;
        socket
    };
    let s = String::from;

    let updated = fast(Socket::<R>::builder(&h.url()))
        .param("who", "updated")
        .param("v", "1")
        .auth_token("t1")
        .header("X-Client", "phx-conformance")
        .connect()
        .await
        .unwrap();
    updated.set_param("v", "2").await.unwrap();
    updated.set_auth_token(Some("t2".into())).await.unwrap();
    let updated = reconnected(updated).await;
    assert_eq!(
        seen_by("updated"),
        [(Some(s("1")), Some(s("t1"))), (Some(s("2")), Some(s("t2")))]
    );
    // A header given to the builder goes with every upgrade request.
    assert_eq!(
        headers_of("updated"),
        [Some(s("phx-conformance")), Some(s("phx-conformance"))]
    );
    updated.disconnect().await.unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let params = fast(Socket::<R>::builder(&h.url()))
        .param("who", "params")
        .params_with(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            vec![("v".into(), format!("p{n}"))]
        })
        .connect()
        .await
        .unwrap();
    let params = reconnected(params).await;
    assert_eq!(
        seen_by("params"),
        [(Some(s("p0")), None), (Some(s("p1")), None)]
    );
    assert_eq!(headers_of("params"), [None, None], "no header was given");
    params.disconnect().await.unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let token = fast(Socket::<R>::builder(&h.url()))
        .param("who", "token")
        .auth_token_with(move || format!("tok{}", counter.fetch_add(1, Ordering::SeqCst)))
        .connect()
        .await
        .unwrap();
    let token = reconnected(token).await;
    assert_eq!(
        seen_by("token"),
        [(None, Some(s("tok0"))), (None, Some(s("tok1")))]
    );
    token.disconnect().await.unwrap();
}

/// A cast is fire and forget: nothing is pending after it, and a cast the server never
/// answers produces no timeout, even well past the push timeout.
pub async fn a_cast_is_not_tracked<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h).timeout(MS(100)).connect().await.unwrap();
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    lobby.cast("noreply", &json!({})).await.unwrap();
    lobby
        .cast("ping", &json!({"answered": true}))
        .await
        .unwrap();
    assert_eq!(socket.stats().await.unwrap().pushes_pending, 0);
    sleep::<R>(MS(300)).await;
    while let Some(Some(Ok(e))) = futures::select_biased! {
        e = events.next().fuse() => Some(e),
        () = sleep::<R>(MS(50)).fuse() => None,
    } {
        assert!(
            !matches!(e, Event::PushTimedOut { .. } | Event::Unexpected(_)),
            "{e:?}"
        );
    }
    let stats = socket.stats().await.unwrap();
    assert_eq!(
        (stats.push_timeouts, stats.unknown_refs),
        (0, 0),
        "{stats:?}"
    );
    assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
}

/// Binary frames: push → binary reply, binary server push, binary broadcast.
pub async fn binary_push_reply_and_broadcast<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let (bin, _) = socket.channel("room:bin").join().await.unwrap();
    let mut messages = bin.messages();
    let r = bin
        .push_binary("bin", vec![1u8, 2, 3, 0, 255])
        .await
        .unwrap();
    assert!(r.response.is_binary());
    assert_eq!(r.response.as_bytes().as_ref(), &[1, 2, 3, 0, 255]);
    bin.push_binary("bin_push", &b"push me"[..]).await.unwrap();
    let m = within::<R, _>(MS(2000), "binary push", messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.event, "bin_push");
    assert_eq!(m.payload.as_bytes().as_ref(), b"push me");
    bin.push_binary("bin_shout", vec![0xde_u8, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    let m = within::<R, _>(MS(2000), "binary broadcast", messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.event.as_str(), m.join_ref.clone()), ("bin_shout", None));
    assert_eq!(m.payload.as_bytes().as_ref(), &[0xde, 0xad, 0xbe, 0xef]);
    // A JSON push can get a binary reply.
    let r = bin.push("bin", &json!({"json": "in"})).await.unwrap();
    assert_eq!(r.response.as_bytes().as_ref(), br#"{"json":"in"}"#);
}

/// The V1 serializer works end to end (and refuses binary payloads locally).
pub async fn v1_serializer<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h).serializer(V1Json).connect().await.unwrap();
    let (lobby, reply) = socket
        .channel("room:lobby")
        .params(&json!({"user": "v1"}))
        .join()
        .await
        .unwrap();
    assert_eq!(
        reply.decode::<Value>().unwrap()["params"],
        json!({"user": "v1"})
    );
    let mut messages = lobby.messages();
    assert!(lobby.push("ping", &json!({"v": 1})).await.unwrap().is_ok());
    lobby.cast("shout", &json!({"b": 1})).await.unwrap();
    let m = within::<R, _>(MS(2000), "v1 broadcast", messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.event, "shout");
    assert!(matches!(
        lobby.push_binary("bin", vec![1u8]).await,
        Err(PushError::Refused(phx_proto::PushError::Encode(_)))
    ));
}

/// A flood to a reader that does not keep up: memory stays bounded, and every message is
/// either received or reported dropped.
pub async fn slow_reader_gets_explicit_lag<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h)
        .channel_capacity(64)
        .connect()
        .await
        .unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    const N: u64 = 5000;
    // The flood arrives while nobody reads.
    let r = lobby.push("flood", &json!({"n": N})).await.unwrap();
    assert_eq!(r.decode::<Value>().unwrap(), json!({"n": N}));
    let (mut received, mut dropped, mut last) = (0u64, 0u64, 0u64);
    while received + dropped < N {
        match within::<R, _>(MS(2000), "flood", messages.next()).await {
            Some(Ok(m)) => {
                let i = m.payload.decode::<Value>().unwrap()["i"].as_u64().unwrap();
                assert!(i > last, "out of order: {i} after {last}");
                last = i;
                received += 1;
            }
            Some(Err(Lagged(n))) => dropped += n,
            None => panic!("stream ended"),
        }
    }
    assert_eq!(received + dropped, N);
    assert!(received >= 64, "the first 64 are kept");
    assert!(dropped > 0, "a reader this slow must lag");
}

/// With the default stream capacity, a reader that does not read at all while 60,000 messages
/// arrive (a flood that outlasts the OS taking its core for many time slices) still gets every
/// one of them, in order, with no `Lagged`.
pub async fn a_paused_reader_loses_nothing_by_default<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    const N: u64 = 60_000;
    // The reply follows the flood, so every message has been queued once it resolves.
    let r = lobby.push("flood", &json!({"n": N})).await.unwrap();
    assert_eq!(r.decode::<Value>().unwrap(), json!({"n": N}));
    for i in 1..=N {
        match within::<R, _>(MS(2000), "flood", messages.next()).await {
            Some(Ok(m)) => assert_eq!(m.payload.decode::<Value>().unwrap()["i"], i),
            Some(Err(Lagged(n))) => panic!("{n} messages lost before message {i}"),
            None => panic!("stream ended"),
        }
    }
}

/// A reader that never reads holds up nothing else: its stream keeps what fits and reports the
/// rest as lost, while the other channel's pushes and broadcasts and the heartbeat (every
/// 300 ms here) go on, on the same connection.
pub async fn a_stuck_reader_holds_up_nothing_else<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h)
        .channel_capacity(64)
        .connect()
        .await
        .unwrap();
    let (stuck, _) = socket.channel("room:stuck").join().await.unwrap();
    let mut stuck_messages = stuck.messages();
    let (other, _) = socket.channel("room:other").join().await.unwrap();
    let mut other_messages = other.messages();
    const N: u64 = 5000;
    // The reply follows the flood: every message has been handled once it resolves.
    stuck.push("flood", &json!({"n": N})).await.unwrap();
    for i in 0..6u64 {
        sleep::<R>(MS(200)).await;
        let reply = other.push("ping", &json!({"i": i})).await.unwrap();
        assert_eq!(reply.decode::<Value>().unwrap(), json!({"i": i}));
        other.cast("shout", &json!({"i": i})).await.unwrap();
        let m = within::<R, _>(
            MS(2000),
            "the other channel's broadcast",
            other_messages.next(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(m.payload.decode::<Value>().unwrap(), json!({"i": i}));
    }
    let stats = socket.stats().await.unwrap();
    assert_eq!(stats.connects, 1, "the connection stayed up");
    assert_eq!(stats.heartbeat_timeouts, 0);
    assert!(stats.last_rtt.is_some(), "heartbeats were answered");
    let (received, dropped) = read_messages::<R>(&mut stuck_messages, N).await;
    assert_eq!(received, 64, "the stream kept what fits");
    assert_eq!(dropped, N - 64);
}

/// Large messages to a reader that does not keep up are bounded by bytes as well as by count:
/// the stream keeps what fits in `channel_capacity_bytes` and reports the rest as lost, in
/// place, long before the count would bind.
pub async fn large_messages_are_bounded_by_the_byte_budget<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h)
        .channel_capacity_bytes(10_000)
        .connect()
        .await
        .unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    // 3,011 payload bytes each: three fit in 10,000, a fourth would not.
    let big = Payload::json(&json!({ "blob": "x".repeat(3000) })).unwrap();
    assert_eq!(big.as_bytes().len(), 3011);
    for _ in 0..10 {
        assert_eq!(h.broadcast("room:lobby", "big", big.clone()).await, 1);
    }
    // The reply comes after the ten broadcasts, so they have all been queued by now.
    lobby.push("ping", &json!({})).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        match within::<R, _>(MS(2000), "the queued messages", messages.next()).await {
            Some(Ok(m)) => got.push(Ok(m.payload.as_bytes().len())),
            Some(Err(lag)) => got.push(Err(lag)),
            None => panic!("stream ended"),
        }
    }
    assert_eq!(got, [Ok(3011), Ok(3011), Ok(3011), Err(Lagged(7))]);
    // Once read, the budget is free again.
    h.broadcast("room:lobby", "big", big.clone()).await;
    let m = within::<R, _>(MS(2000), "the next message", messages.next()).await;
    assert!(matches!(m, Some(Ok(m)) if m.event == "big"));
}

/// Refused connects report the HTTP status and back off; the socket comes up once the server
/// accepts again, and `connect_lazy` keeps retrying in the background.
pub async fn retries_while_the_server_refuses<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    h.refuse_connects(MS(400)).await;
    let socket = builder::<R>(&h).connect_lazy().unwrap();
    let mut events = socket.events();
    let refused = wait_event::<R>(&mut events, MS(2000), "refusal", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert!(matches!(
        refused,
        Event::Disconnected {
            reason: DisconnectReason::Transport(CloseReason::Refused { status: 503 }),
            reconnect_at: Some(_),
            ..
        }
    ));
    let (lobby, _) = within::<R, _>(
        MS(5000),
        "join once accepted",
        socket.channel("room:lobby").join(),
    )
    .await
    .unwrap();
    assert!(lobby.push("ping", &json!({})).await.is_ok());
}

/// Dropping every handle shuts the driver down and closes the WebSocket.
pub async fn dropping_every_handle_closes_the_socket<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    assert_eq!(h.open_connections().await, 1);
    drop(socket);
    // A channel handle keeps the socket alive.
    sleep::<R>(MS(200)).await;
    assert_eq!(h.open_connections().await, 1);
    assert!(lobby.push("ping", &json!({})).await.is_ok());
    drop(lobby);
    let mut open = 1;
    for _ in 0..50 {
        sleep::<R>(MS(20)).await;
        open = h.open_connections().await;
        if open == 0 {
            break;
        }
    }
    assert_eq!(
        open, 0,
        "the connection is closed once every handle is gone"
    );
}

/// Presence with several users: the view lists who is there, reports joins and leaves (with
/// typed metas), and is resynchronised after a reconnect (a user who left meanwhile is reported
/// as a leave). Phoenix may send a join's `presence_state` before or after the diff announcing
/// it; both orders are run.
pub async fn presence_with_several_users<R: Runtime + Default>() {
    for order in [PresenceOrder::DiffFirst, PresenceOrder::StateFirst] {
        presence_with_several_users_in::<R>(order).await;
    }
}

async fn presence_with_several_users_in<R: Runtime + Default>(order: PresenceOrder) {
    #[derive(serde::Deserialize)]
    struct Meta {
        online_at: u64,
    }
    let h = BackgroundServer::start(ServerConfig {
        socket_id: phx_tests::server::SocketIdMode::PerConnection,
        presence_order: order,
        ..ServerConfig::default()
    });
    let alice = connect::<R>(&h).await;
    let mut events = alice.events();
    let (lobby, _) = alice
        .channel("presence:lobby")
        .params(&json!({"user": "alice"}))
        .presence()
        .join()
        .await
        .unwrap();
    let view = lobby.presence().expect("joined with presence");
    let mut changes = view.changes();
    let keys = |list: Vec<(String, phx_client::PresenceEntry)>| {
        list.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
    };
    // alice's own arrival, then a sync.
    let mut seen = Vec::new();
    while !seen.contains(&"sync".to_owned()) {
        match within::<R, _>(MS(2000), "alice's sync", changes.next()).await {
            Some(Ok(phx_client::PresenceChange::Join { key, .. })) => seen.push(format!("+{key}")),
            Some(Ok(phx_client::PresenceChange::Sync)) => seen.push("sync".into()),
            other => panic!("{other:?}"),
        }
    }
    assert!(seen.contains(&"+alice".to_owned()));
    assert_eq!(keys(view.list().await.unwrap()), ["alice"]);

    // A second stream of the same view sees the same changes from when it was made.
    let mut also = view.changes();
    let others: Vec<Socket<R>> = futures::future::join_all((0..2).map(|_| connect::<R>(&h))).await;
    let mut their_channels = Vec::new();
    for (s, name) in others.iter().zip(["bob", "carol"]) {
        let (c, _) = s
            .channel("presence:lobby")
            .params(&json!({"user": name}))
            .join()
            .await
            .unwrap();
        their_channels.push(c);
    }
    let mut joined = BTreeSet::new();
    let mut main_joins = Vec::new();
    while joined.len() < 2 {
        if let Some(Ok(phx_client::PresenceChange::Join {
            key,
            current,
            joined: j,
        })) = within::<R, _>(MS(2000), "joins", changes.next()).await
        {
            if key == "alice" {
                // With the state first, alice's own diff follows it and changes nothing; it
                // is reported as a join of someone already present, as phoenix.js does.
                assert!(
                    order == PresenceOrder::StateFirst && current.is_some(),
                    "{order:?}: alice joined again ({current:?})"
                );
                continue;
            }
            assert!(j.decode_metas::<Meta>().unwrap()[0].online_at > 0);
            main_joins.push((key.clone(), current, j));
            joined.insert(key);
        }
    }
    assert_eq!(
        joined,
        BTreeSet::from(["bob".to_owned(), "carol".to_owned()])
    );
    let mut also_joins = Vec::new();
    while also_joins.len() < main_joins.len() {
        match within::<R, _>(MS(2000), "the second stream's joins", also.next()).await {
            Some(Ok(phx_client::PresenceChange::Join {
                key,
                current,
                joined,
            })) if key != "alice" => also_joins.push((key, current, joined)),
            Some(Ok(
                phx_client::PresenceChange::Join { .. } | phx_client::PresenceChange::Sync,
            )) => {}
            other => panic!("second stream: {other:?}"),
        }
    }
    assert_eq!(also_joins, main_joins);
    let names = view
        .list_by(|key, entry| format!("{key}x{}", entry.metas.len()))
        .await
        .unwrap();
    assert_eq!(names, ["alicex1", "bobx1", "carolx1"]);

    // carol leaves while alice is cut off; after the reconnect the new state reports it.
    h.restart().await;
    others[1].disconnect().await.unwrap();
    wait_event::<R>(&mut events, MS(3000), "alice rejoins", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    // bob's socket rejoins too (after the restart every client reconnects).
    let mut left = Vec::new();
    for _ in 0..200 {
        let list = keys(view.list().await.unwrap());
        if list == ["alice", "bob"] {
            break;
        }
        sleep::<R>(MS(20)).await;
    }
    while let Some(Ok(change)) = futures::select_biased! {
        c = changes.next().fuse() => c,
        () = sleep::<R>(MS(200)).fuse() => None,
    } {
        if let phx_client::PresenceChange::Leave { key, current, .. } = change
            && current.metas.is_empty()
        {
            left.push(key);
        }
    }
    assert_eq!(keys(view.list().await.unwrap()), ["alice", "bob"]);
    assert!(
        left.contains(&"carol".to_owned()),
        "carol's leave reported: {left:?}"
    );
    assert_eq!(
        h.call(|s, _| s.presence_list("presence:lobby"))
            .await
            .as_object()
            .map(|o| o.len()),
        Some(2)
    );
}

/// `wss://`: a server whose CA the client trusts connects; an untrusted certificate fails with
/// a TLS error naming the cause; verification is only skipped when explicitly turned off.
pub async fn tls_verifies_certificates<R: Runtime + Default>() {
    tls_verifies_certificates_with::<R>(|b| b).await;
}

/// The checks of [`tls_verifies_certificates`] with every builder passed through `backend`
/// (to pick another TLS library): a certificate from the trusted CA connects, an untrusted one
/// fails with a TLS error that names the certificate (returned, for the backend's own
/// checks), verification can be turned off, and a bad root certificate is refused.
pub async fn tls_verifies_certificates_with<R: Runtime + Default>(
    backend: impl Fn(Builder<R>) -> Builder<R>,
) -> String {
    let ca = phx_tests::tls::TestCa::new();
    let h = BackgroundServer::start_tls(ServerConfig::default(), ca.server_config());
    assert!(h.url().starts_with("wss://localhost:"));
    let socket = backend(builder::<R>(&h))
        .add_root_certificate_pem(ca.ca_pem().as_bytes())
        .connect()
        .await
        .expect("a trusted certificate connects");
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    assert!(
        lobby
            .push("ping", &json!({"over": "tls"}))
            .await
            .unwrap()
            .is_ok()
    );
    let untrusted = match backend(builder::<R>(&h)).connect().await {
        Err(ConnectError::Tls(msg)) => {
            assert!(
                msg.to_lowercase().contains("certificate"),
                "unclear TLS error: {msg}"
            );
            msg
        }
        other => panic!("an untrusted certificate must fail with a TLS error, got {other:?}"),
    };
    let insecure = backend(builder::<R>(&h))
        .danger_accept_invalid_certs(true)
        .connect()
        .await
        .expect("verification explicitly off");
    assert!(insecure.channel("room:lobby").join().await.is_ok());
    assert!(matches!(
        backend(builder::<R>(&h))
            .add_root_certificate_pem(b"not a certificate")
            .connect()
            .await,
        Err(ConnectError::Tls(msg)) if msg.contains("root certificate")
    ));
    untrusted
}

/// The connection the server holds for the (single) client.
async fn only_conn(h: &Harness) -> phx_tests::server::ConnId {
    let conns = h.call(|s, _| s.connections()).await;
    assert_eq!(conns.len(), 1, "expected one connection");
    conns[0]
}

/// A message whose payload is not JSON never reaches a stream, whichever reads it (the
/// channel's own stream checks its messages; with more streams the driver checks once), and is
/// counted and reported exactly once; the messages around it arrive.
pub async fn a_malformed_payload_is_dropped_once_whatever_reads_it<R: Runtime + Default>() {
    use bytes::Bytes;
    use phx_proto::{Frame, Unexpected};
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut all = lobby.messages();
    let conn = only_conn(&h).await;
    let send = |text: &'static str| {
        let f = Frame::Text(Bytes::from_static(text.as_bytes()));
        h.call(move |s, _| s.send_raw(conn, f))
    };
    // One stream: the stream checks.
    assert!(send(r#"[null,null,"room:lobby","note",{"n":1}]"#).await);
    assert!(send(r#"[null,null,"room:lobby","note",{"n":}]"#).await);
    assert!(send(r#"[null,null,"room:lobby","note",{"n":2}]"#).await);
    for n in [1, 2] {
        let msg = within::<R, _>(MS(2000), "a message", all.next()).await;
        let msg = msg.unwrap().unwrap();
        assert_eq!(msg.payload.decode::<Value>().unwrap(), json!({"n": n}));
    }
    // Three streams: the driver checks, once.
    let mut notes = lobby.on("note");
    let mut second = lobby.messages();
    assert!(send(r#"[null,null,"room:lobby","note",[1,2,]]"#).await);
    assert!(send(r#"[null,null,"room:lobby","note",{"n":3}]"#).await);
    for stream in [&mut all, &mut notes, &mut second] {
        let msg = within::<R, _>(MS(2000), "a message", stream.next()).await;
        let msg = msg.unwrap().unwrap();
        assert_eq!(msg.payload.decode::<Value>().unwrap(), json!({"n": 3}));
    }
    let stats = socket.stats().await.unwrap();
    assert_eq!(stats.invalid_frames, 2, "{stats:?}");
    let mut reported = 0;
    while let Some(Some(Ok(e))) = futures::select_biased! {
        e = events.next().fuse() => Some(e),
        () = sleep::<R>(MS(100)).fuse() => None,
    } {
        if matches!(e, Event::Unexpected(Unexpected::InvalidFrame(_))) {
            reported += 1;
        }
    }
    assert_eq!(reported, 2, "each malformed message reported once");
}

/// Tasks pushing at once, on the runtime's threads and on this one: a push is written from its
/// caller's task when the driver is idle and no other push awaits a reply, and goes through the
/// command queue otherwise. Whichever way each one takes, every push gets its own reply and each
/// task's pushes reach the server in the order it made them.
pub async fn concurrent_pushes_keep_each_tasks_order<R: Runtime + Default>() {
    use phx_proto::ServerSerializer;
    const TASKS: u64 = 6;
    const PUSHES: u64 = 60;
    let h = BackgroundServer::start(ServerConfig {
        record_frames: true,
        ..ServerConfig::default()
    });
    let socket = connect::<R>(&h).await;
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let pushes = |t: u64, lobby: Channel<R>| async move {
        for i in 0..PUSHES {
            let reply = lobby.push("ping", &json!({"t": t, "i": i})).await.unwrap();
            assert_eq!(reply.decode::<Value>().unwrap(), json!({"t": t, "i": i}));
            if i % 7 == t % 7 {
                lobby
                    .cast("noreply", &json!({"t": t, "i": i}))
                    .await
                    .unwrap();
            }
        }
    };
    let rt = R::default();
    let mut done = Vec::new();
    for t in 0..TASKS / 2 {
        let (tx, rx) = futures::channel::oneshot::channel();
        let task = pushes(t, lobby.clone());
        rt.spawn(async move {
            task.await;
            let _ = tx.send(());
        });
        done.push(rx);
    }
    let here = futures::future::join_all((TASKS / 2..TASKS).map(|t| pushes(t, lobby.clone())));
    let spawned = futures::future::join_all(done);
    within::<R, _>(
        MS(20_000),
        "every push",
        futures::future::join(here, spawned),
    )
    .await;
    // A cast resolves once it is taken, not once it is sent: a push sent after every task is
    // done goes out after their last casts, so its reply says the server has them all.
    let fence = lobby.push("ping", &json!({"t": 99, "i": 0})).await.unwrap();
    assert!(fence.is_ok());
    let conn = only_conn(&h).await;
    let seen: Vec<(String, u64, u64)> = h
        .call(move |s, _| {
            s.received(conn)
                .iter()
                .filter_map(|f| phx_proto::V2Json.decode_from_client(f).ok())
                .filter(|m| m.event == "ping" || m.event == "noreply")
                .map(|m| {
                    let v: Value = m.payload.decode().unwrap();
                    (
                        m.event.to_string(),
                        v["t"].as_u64().unwrap(),
                        v["i"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .await;
    for t in 0..TASKS {
        let order: Vec<(&str, u64)> = seen
            .iter()
            .filter(|(_, task, _)| *task == t)
            .map(|(event, _, i)| (event.as_str(), *i))
            .collect();
        let mut want = Vec::new();
        for i in 0..PUSHES {
            want.push(("ping", i));
            if i % 7 == t % 7 {
                want.push(("noreply", i));
            }
        }
        assert_eq!(
            order, want,
            "task {t}'s pushes, in the order the server got them"
        );
    }
}

/// A hostile server: garbage, unknown topics and refs, a reply to a timed-out push, deeply
/// nested JSON, an unknown binary kind. Each is counted and reported; the connection, the
/// channel and every pending push survive.
pub async fn hostile_frames_are_ignored_and_nothing_is_lost<R: Runtime + Default>() {
    use bytes::Bytes;
    use phx_proto::{Frame, ServerSerializer, Unexpected, V2Json};
    let h = BackgroundServer::start(ServerConfig {
        record_frames: true,
        ..ServerConfig::default()
    });
    let socket = connect::<R>(&h).await;
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    // A push that will time out, then get a late reply.
    let timed_out = lobby
        .push_payload("noreply", Payload::empty(), Some(MS(100)))
        .await;
    assert_eq!(timed_out, Err(PushError::Timeout));
    // A push that stays pending through the attack.
    let pending = {
        let lobby = lobby.clone();
        async move {
            lobby
                .push_payload(
                    "slow",
                    Payload::json(&json!({"ms": 400})).unwrap(),
                    Some(MS(5000)),
                )
                .await
        }
    };
    let attack = async {
        sleep::<R>(MS(50)).await;
        let conn = only_conn(&h).await;
        // The late reply answers the push that timed out, by the ref it was sent with.
        let timed_out_ref = h
            .call(move |s, _| {
                s.received(conn)
                    .iter()
                    .filter_map(|f| V2Json.decode_from_client(f).ok())
                    .find(|m| m.event == "noreply")
                    .and_then(|m| m.ref_)
            })
            .await
            .expect("the server saw the push that timed out");
        let late_reply = format!(
            r#"["1","{timed_out_ref}","room:lobby","phx_reply",{{"response":{{}},"status":"ok"}}]"#
        );
        let deep = format!(
            "[null,null,\"room:lobby\",\"deep\",{}{}]",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let frames = vec![
            Frame::Text(Bytes::from_static(b"{{{ not json")),
            Frame::Text(Bytes::from_static(b"[1,2,3]")),
            Frame::Binary(Bytes::from_static(&[9, 1, 2, 3])),
            Frame::Text(Bytes::from_static(br#"[null,null,"room:nope","x",{}]"#)),
            Frame::Text(Bytes::from_static(
                br#"[null,"99999","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
            )),
            Frame::Text(Bytes::from(deep)),
            // A reply without its response: not a valid reply frame.
            Frame::Text(Bytes::from_static(
                br#"["1","1","room:lobby","phx_reply",{"status":"ok"}]"#,
            )),
            Frame::Text(Bytes::from(late_reply)),
            // A valid message after them all: the first the channel's stream hands out.
            Frame::Text(Bytes::from_static(
                br#"[null,null,"room:lobby","after",{"ok":true}]"#,
            )),
        ];
        for f in frames {
            assert!(h.call(move |s, _| s.send_raw(conn, f)).await);
        }
    };
    let (pending, ()) = futures::join!(pending, attack);
    assert!(
        pending.unwrap().is_ok(),
        "the pending push survived the attack"
    );
    assert!(
        lobby
            .push("ping", &json!({"still": "alive"}))
            .await
            .unwrap()
            .is_ok()
    );
    // The deeply nested payload is refused where the stream hands messages out (the driver
    // leaves that check to the consumer); it never reaches the application.
    let first = messages.next().await.unwrap().unwrap();
    assert_eq!(first.event, "after");
    assert!(first.payload.is_checked());
    let stats = socket.stats().await.unwrap();
    assert_eq!(stats.connects, 1, "no reconnect was needed");
    assert!(stats.invalid_frames >= 5, "{stats:?}");
    assert!(
        stats.unknown_topics >= 1 && stats.unknown_refs >= 2,
        "the stray reply and the late one are both unknown refs: {stats:?}"
    );
    let mut unexpected = 0;
    while let Some(Some(Ok(e))) = futures::select_biased! {
        e = events.next().fuse() => Some(e),
        () = sleep::<R>(MS(100)).fuse() => None,
    } {
        if matches!(
            e,
            Event::Unexpected(
                Unexpected::InvalidFrame(_)
                    | Unexpected::UnknownTopic { .. }
                    | Unexpected::UnknownRef { .. }
            )
        ) {
            unexpected += 1;
        }
    }
    assert!(
        unexpected >= 7,
        "every hostile frame is reported ({unexpected})"
    );
}

/// A flood to a slow reader: memory stays within the stream's capacity and every message is
/// accounted for, received or reported dropped.
pub async fn flood_to_a_slow_reader_is_bounded_and_accounted<R: Runtime + Default>() {
    let n: u64 = std::env::var("PHX_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let h = BackgroundServer::start(ServerConfig::default());
    // Heartbeat replies queue behind the flood; a 300 ms heartbeat would (correctly) declare
    // the link dead, so this test uses Phoenix's default interval.
    let socket = builder::<R>(&h)
        .heartbeat(Duration::from_secs(30))
        .channel_capacity(1024)
        .connect()
        .await
        .unwrap();
    let (lobby, _) = socket.channel("room:flood").join().await.unwrap();
    let mut messages = lobby.messages();
    let payload =
        Payload::json(&json!({"user": "alice", "body": "hello there", "id": 12345})).unwrap();
    let sent = h
        .broadcast_repeated("room:flood", "flood", payload, n)
        .await;
    assert_eq!(sent, 1, "one subscriber");
    let (mut received, mut dropped, mut max_queued) = (0u64, 0u64, 0usize);
    while received + dropped < n {
        max_queued = max_queued.max(messages.len());
        match within::<R, _>(MS(30_000), "flood", messages.next()).await {
            Some(Ok(_)) => {
                received += 1;
                // A slow reader: it pauses now and then.
                if received % 2000 == 0 {
                    sleep::<R>(MS(1)).await;
                }
            }
            Some(Err(Lagged(k))) => dropped += k,
            None => panic!("stream ended"),
        }
    }
    assert_eq!(received + dropped, n, "received + reported dropped == sent");
    assert!(max_queued <= 2 * messages.capacity(), "queued {max_queued}");
    assert_eq!(socket.stats().await.unwrap().messages, n);
}

/// An HTTP 403 on connect: the event says refused and the backoff goes on.
pub async fn refused_403_keeps_backing_off<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let (socket, driver) = Socket::<R>::builder(&h.url())
        .secret_param("token", "wrong")
        .reconnect(Backoff::Schedule {
            delays: vec![MS(20), MS(40)],
            jitter: 0.0,
        })
        .into_driver()
        .unwrap();
    // Subscribe before the driver runs, so the very first refusal is seen.
    let mut events = socket.events();
    R::default().spawn(driver);
    let mut delays = Vec::new();
    while delays.len() < 3 {
        if let Event::Disconnected {
            reason: DisconnectReason::Transport(CloseReason::Refused { status }),
            reconnect_delay: Some(d),
            ..
        } = wait_event::<R>(&mut events, MS(3000), "refusal", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await
        {
            assert_eq!(status, 403);
            delays.push(d);
        }
    }
    assert_eq!(delays, [MS(20), MS(40), MS(40)]);
}

/// The URL of a server that accepts connections and holds them without a byte of answer.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
        }
    });
    url
}

/// A server that accepts TCP and never answers the upgrade: the connect timeout fires.
pub async fn silent_server_hits_the_connect_timeout<R: Runtime + Default>() {
    let url = silent_server();
    let started = R::default().now();
    let err = Socket::<R>::builder(&url)
        .connect_timeout(MS(300))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err, ConnectError::Timeout);
    assert!(R::default().now() - started < MS(2000));
}

/// A message larger than the configured limit drops the connection with a typed reason; the
/// socket reconnects and the channel rejoins.
pub async fn oversized_message_closes_and_reconnects<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder::<R>(&h)
        .max_message_size(2000)
        .connect()
        .await
        .unwrap();
    let mut events = socket.events();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let big = "x".repeat(5000);
    let _ = lobby
        .push(
            "push_me",
            &json!({"event": "big", "payload": {"blob": big}}),
        )
        .await;
    wait_event::<R>(&mut events, MS(3000), "too large", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Transport(CloseReason::MessageTooLarge { max: 2000, .. }),
                reconnect_at: Some(_),
                ..
            }
        )
    })
    .await;
    wait_event::<R>(&mut events, MS(3000), "rejoin", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
    // The frame limit works the same way, on its own.
    let small_frames = builder::<R>(&h)
        .max_frame_size(2500)
        .connect()
        .await
        .unwrap();
    let mut frame_events = small_frames.events();
    let (c, _) = small_frames.channel("room:lobby").join().await.unwrap();
    let _ = c
        .push(
            "push_me",
            &json!({"event": "big", "payload": {"blob": "z".repeat(5000)}}),
        )
        .await;
    wait_event::<R>(&mut frame_events, MS(3000), "frame too large", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Transport(CloseReason::MessageTooLarge { max: 2500, .. }),
                reconnect_at: Some(_),
                ..
            }
        )
    })
    .await;
    wait_event::<R>(&mut frame_events, MS(3000), "rejoin", |e| {
        matches!(e, Event::Joined { rejoin: true, .. })
    })
    .await;
    small_frames.disconnect().await.unwrap();
    // And a push too large to send fails at once, without touching the connection.
    let huge = "y".repeat(3000);
    let small_out = builder::<R>(&h)
        .max_outgoing_frame_size(1000)
        .connect()
        .await
        .unwrap();
    let (c, _) = small_out.channel("room:lobby").join().await.unwrap();
    assert!(matches!(
        c.push("ping", &json!({"blob": huge})).await,
        Err(PushError::Refused(phx_proto::PushError::Encode(
            phx_proto::EncodeError::FrameTooLarge { .. }
        )))
    ));
    assert!(c.push("ping", &json!({})).await.is_ok());
}

/// Wrong URLs, schemes, topics and options are typed errors that say what is wrong.
pub async fn invalid_input_is_a_typed_error<R: Runtime + Default>() {
    use phx_proto::ConfigError;
    for (url, needle) in [
        ("ftp://h/socket", "scheme"),
        ("localhost:4000/socket", "expected a URL"),
        ("ws:///socket", "host"),
        // URLs the endpoint rules let through but no HTTP request can carry: refused here,
        // not by a dial that fails on every retry (and by connect_lazy, below, too).
        ("ws://127.0.0.1:9/socket?a=b c", "HTTP request"),
        ("ws://h:80:80/socket", "HTTP request"),
        ("ws://[::1/socket", "HTTP request"),
        ("ws://h\u{e9}llo/socket", "HTTP request"),
    ] {
        match Socket::<R>::builder(url).connect().await {
            Err(ConnectError::Config(ConfigError::Endpoint { reason, .. })) => {
                assert!(reason.contains(needle), "{url}: {reason}")
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(matches!(
        Socket::<R>::builder("ws://h:80:80/socket").connect_lazy(),
        Err(ConnectError::Config(ConfigError::Endpoint { .. }))
    ));
    // Settings the driver or tungstenite cannot work with (tungstenite panicked on the last).
    type Set<R> = fn(Builder<R>) -> Builder<R>;
    let settings: [(&str, Set<R>); 8] = [
        ("channel_capacity", |b| b.channel_capacity(0)),
        ("channel_capacity_bytes", |b| b.channel_capacity_bytes(0)),
        ("event_capacity", |b| b.event_capacity(0)),
        ("read_buffer_size", |b| b.read_buffer_size(0)),
        ("max_message_size", |b| b.max_message_size(0)),
        ("max_frame_size", |b| b.max_frame_size(0)),
        ("header", |b| b.header("bad name", "v")),
        ("websocket_config", |b| {
            b.websocket_config(
                phx_client::WebSocketConfig::default()
                    .write_buffer_size(1 << 20)
                    .max_write_buffer_size(1 << 10),
            )
        }),
    ];
    for (name, set) in settings {
        match set(Socket::<R>::builder("ws://h/socket")).connect_lazy() {
            Err(ConnectError::Config(ConfigError::Invalid { setting, .. })) => {
                assert_eq!(setting, name)
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    match Socket::<R>::builder("ws://h/socket")
        .heartbeat(Duration::ZERO)
        .connect()
        .await
    {
        Err(ConnectError::Config(ConfigError::Invalid { setting, .. })) => {
            assert_eq!(setting, "heartbeat_interval")
        }
        other => panic!("{other:?}"),
    }
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    assert!(matches!(
        socket.channel("").join().await,
        Err(JoinError::Invalid(
            phx_proto::JoinError::InvalidTopic { .. }
        ))
    ));
    // A zero timeout, for a join or a push, is refused as the socket-wide one is.
    assert_eq!(
        socket
            .channel("room:zero")
            .timeout(Duration::ZERO)
            .join()
            .await
            .err(),
        Some(JoinError::Invalid(phx_proto::JoinError::ZeroTimeout))
    );
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    assert_eq!(
        lobby
            .push_payload("ping", Payload::empty(), Some(Duration::ZERO))
            .await,
        Err(PushError::Refused(phx_proto::PushError::ZeroTimeout))
    );
    // http(s) endpoints are mapped to ws(s) and the /websocket suffix is added once.
    let http = h.url().replace("ws://", "http://") + "/websocket";
    let s = Socket::<R>::builder(&http)
        .secret_param("token", "secret")
        .connect()
        .await
        .unwrap();
    assert!(s.url().starts_with("ws://") && s.url().contains("/socket/websocket?"));
}

/// `disconnect()` and `connect()` issued together (here: both queued behind a push awaiting
/// its reply): `disconnect()` must still resolve.
pub async fn disconnect_then_connect_at_once_both_resolve<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    // A push awaiting its reply keeps the shortcut off: both commands go through the queue
    // and the driver applies them in one batch.
    let pending = lobby.push_payload("noreply", Payload::empty(), Some(MS(10_000)));
    let disconnect = async {
        futures::select_biased! {
            r = socket.disconnect().fuse() => Some(r),
            () = sleep::<R>(MS(3000)).fuse() => None,
        }
    };
    let (p, d, c) = futures::join!(pending, disconnect, socket.connect());
    assert_eq!(p, Err(PushError::Failed(PushFailure::Disconnected)));
    c.unwrap();
    assert_eq!(d, Some(Ok(())), "disconnect() never resolved");
}

/// The driver future is dropped (its runtime shut down, or an application that polls it
/// itself stops): the streams end, as they do when the driver stops by itself.
pub async fn a_dropped_driver_ends_every_stream<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let (socket, driver) = builder::<R>(&h).into_driver().unwrap();
    let mut events = socket.events();
    let joined = async {
        let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
        lobby
    };
    let lobby = {
        let mut driver = Box::pin(driver.fuse());
        let joined = joined.fuse();
        futures::pin_mut!(joined);
        futures::select_biased! {
            () = driver => panic!("the driver ended"),
            lobby = joined => lobby,
        }
        // the driver is dropped here
    };
    let mut messages = lobby.messages();
    let end = futures::select_biased! {
        m = messages.next().fuse() => Some(m.is_none()),
        () = sleep::<R>(MS(1000)).fuse() => None,
    };
    assert_eq!(
        end,
        Some(true),
        "the message stream never ends after the driver is dropped"
    );
    let drained = async { while events.next().await.is_some() {} };
    let end = futures::select_biased! {
        () = drained.fuse() => true,
        () = sleep::<R>(MS(1000)).fuse() => false,
    };
    assert!(
        end,
        "the event stream never ends after the driver is dropped"
    );
    // Streams made afterwards end at once too.
    assert!(socket.is_closed());
    let (mut later, mut also) = (socket.events(), lobby.messages());
    let end = futures::select_biased! {
        e = later.next().fuse() => Some(e.is_none() && also.next().await.is_none()),
        () = sleep::<R>(MS(1000)).fuse() => None,
    };
    assert_eq!(
        end,
        Some(true),
        "a stream made after the driver was dropped never ends"
    );
}

/// A join of `topic` polled once and still waiting for its reply: it has been sent, and the
/// test decides what happens before the reply is taken. The reply can come in before that
/// first poll returns (the test's thread losing its core right after writing the join), which
/// is not the case under test: such a join is left, and another one tried. The join, and how
/// many were sent in all.
async fn a_join_sent_and_waiting<R: Runtime + Default>(
    socket: &Socket<R>,
    topic: &str,
) -> (
    Pin<Box<impl Future<Output = Result<(Channel<R>, Reply), JoinError>>>>,
    u64,
) {
    for sent in 1..=20 {
        let mut join = Box::pin(socket.channel(topic).join());
        match futures::poll!(join.as_mut()) {
            Poll::Pending => return (join, sent),
            Poll::Ready(Ok((channel, _))) => channel.leave().await.expect("left"),
            Poll::Ready(Err(e)) => panic!("joining {topic}: {e:?}"),
        }
    }
    panic!("20 joins of {topic} in a row were answered within their first poll");
}

/// A join whose future is dropped before the reply (a timeout around `join()`): the topic is
/// still taken by a channel nobody holds, so joining it again fails.
pub async fn a_cancelled_join_leaves_and_frees_the_topic<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    // Sent, then given up on.
    drop(a_join_sent_and_waiting(&socket, "room:lobby").await.0);
    sleep::<R>(MS(200)).await;
    let again = socket.channel("room:lobby").join().await;
    assert!(
        again.is_ok(),
        "joining again after a cancelled join: {:?}",
        again.err()
    );
}

/// A join whose answer came while its future sat unpolled (a `select!` or timeout whose
/// other branch won in the same wake-up), then dropped without taking it: the channel nobody
/// holds is left, and the topic is free again.
pub async fn a_join_given_up_after_its_answer_came_frees_the_topic<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = connect::<R>(&h).await;
    {
        let (join, sent) = a_join_sent_and_waiting(&socket, "room:lobby").await;
        sleep::<R>(MS(300)).await;
        assert_eq!(
            h.joins("room:lobby").await,
            sent,
            "the join was answered meanwhile"
        );
        drop(join);
    }
    sleep::<R>(MS(200)).await;
    let again = within::<R, _>(MS(3000), "join again", socket.channel("room:lobby").join()).await;
    assert!(
        again.is_ok(),
        "joining again after a join given up with its answer in: {:?}",
        again.err()
    );
}

/// `disconnect()` ends a join that waits for the connection.
pub async fn disconnect_ends_a_join_waiting_for_the_connection<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    h.refuse_connects(MS(10_000)).await;
    let socket = builder::<R>(&h).connect_lazy().unwrap();
    join_then_disconnect_ends_the_join(&socket).await;
}

/// `disconnect()` while the handshake is in flight (a silent server) resolves at once, and
/// ends a join waiting for the connection.
pub async fn disconnect_while_dialing_resolves_and_ends_waiting_joins<R: Runtime + Default>() {
    let url = silent_server();
    let socket = Socket::<R>::builder(&url)
        .connect_timeout(MS(10_000))
        .connect_lazy()
        .unwrap();
    // The dial starts at once and the silent server holds it until the 10 s connect timeout.
    // (Waiting for `Connecting` on `events()` would race: the event can come before the
    // subscription.)
    sleep::<R>(MS(200)).await;
    join_then_disconnect_ends_the_join(&socket).await;
}

/// A join made while the socket has no connection, then `disconnect()`: the join fails and
/// `disconnect()` resolves, both promptly.
async fn join_then_disconnect_ends_the_join<R: Runtime + Default>(socket: &Socket<R>) {
    let join = socket.channel("room:lobby").join();
    let (j, d) = within::<R, _>(MS(2000), "join and disconnect", async {
        futures::join!(join, async {
            sleep::<R>(MS(100)).await;
            socket.disconnect().await
        })
    })
    .await;
    assert!(j.is_err());
    d.unwrap();
}

/// Generates one `#[test]` per scenario, each run by `$run` on the adapter runtime `$rt`.
#[macro_export]
macro_rules! conformance_suite {
    ($rt:ty, $run:path) => {
        $crate::conformance_suite!(@tests $rt, $run,
            join_push_and_replies,
            broadcast_reaches_every_joiner,
            reconnects_and_rejoins_after_server_restart,
            detects_a_missed_heartbeat,
            push_timeout_crash_and_rejoin,
            pushes_wait_for_the_join,
            join_refused,
            server_close_ends_the_channel,
            clean_leave_and_disconnect,
            auth_token_and_refusal,
            credentials_are_refreshed_on_every_connect,
            connect_params_and_token_follow_updates_and_callbacks,
            a_cast_is_not_tracked,
            binary_push_reply_and_broadcast,
            v1_serializer,
            slow_reader_gets_explicit_lag,
            a_paused_reader_loses_nothing_by_default,
            a_stuck_reader_holds_up_nothing_else,
            large_messages_are_bounded_by_the_byte_budget,
            retries_while_the_server_refuses,
            dropping_every_handle_closes_the_socket,
            presence_with_several_users,
            tls_verifies_certificates,
            hostile_frames_are_ignored_and_nothing_is_lost,
            concurrent_pushes_keep_each_tasks_order,
            a_malformed_payload_is_dropped_once_whatever_reads_it,
            flood_to_a_slow_reader_is_bounded_and_accounted,
            refused_403_keeps_backing_off,
            silent_server_hits_the_connect_timeout,
            oversized_message_closes_and_reconnects,
            invalid_input_is_a_typed_error,
            disconnect_then_connect_at_once_both_resolve,
            a_dropped_driver_ends_every_stream,
            a_cancelled_join_leaves_and_frees_the_topic,
            a_join_given_up_after_its_answer_came_frees_the_topic,
            disconnect_ends_a_join_waiting_for_the_connection,
            disconnect_while_dialing_resolves_and_ends_waiting_joins,
        );
    };
    (@tests $rt:ty, $run:path, $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $run(conformance::$name::<$rt>());
            }
        )+
    };
}
