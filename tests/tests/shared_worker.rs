//! A reader in a task on the worker thread the driver runs on. tokio runs a task woken from a
//! worker on that worker, after the task that woke it: a driver that read more than the
//! reader's stream holds before giving the thread up would overrun a reader that keeps
//! reading. A runtime with one worker makes that the only schedule.

use std::time::Duration;

use futures::StreamExt;
use phx_client::Lagged;
use phx_proto::Payload;
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tokio::Socket;
use serde_json::json;

/// Floods `n` broadcasts to a reader spawned on a one-worker multi-thread runtime, on a stream
/// of `capacity` (phx's default with `None`): the channel's stream, or with `filtered` one of
/// its streams for one event. Returns what it received and what was reported lost.
fn flood(n: u64, capacity: Option<usize>, filtered: bool) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let h = BackgroundServer::start(ServerConfig::default());
    let url = h.url();
    let reader = rt.spawn(async move {
        let mut builder = Socket::builder(&url)
            .secret_param("token", "secret")
            .heartbeat(Duration::from_secs(30));
        if let Some(c) = capacity {
            builder = builder.channel_capacity(c);
        }
        let socket = builder.connect().await.unwrap();
        let (room, _) = socket.channel("room:flood").join().await.unwrap();
        let mut messages = if filtered {
            room.on("flood")
        } else {
            room.messages()
        };
        let payload = Payload::json(&json!({"user": "alice", "body": "hello", "id": 1})).unwrap();
        assert_eq!(
            h.broadcast_repeated("room:flood", "flood", payload, n)
                .await,
            1
        );
        let (mut received, mut lagged) = (0u64, 0u64);
        while received + lagged < n {
            let next = tokio::time::timeout(Duration::from_secs(30), messages.next());
            match next.await.expect("the flood stalled") {
                Some(Ok(_)) => received += 1,
                Some(Err(Lagged(k))) => lagged += k,
                None => panic!("the stream ended"),
            }
        }
        (received, lagged)
    });
    rt.block_on(reader).unwrap()
}

#[test]
fn a_reader_on_the_drivers_worker_is_not_overrun() {
    assert_eq!(
        flood(200_000, None, false),
        (200_000, 0),
        "default capacity"
    );
    assert_eq!(flood(50_000, Some(64), false), (50_000, 0), "capacity 64");
    assert_eq!(flood(5_000, Some(1), false), (5_000, 0), "capacity 1");
}

#[test]
fn a_filtered_reader_on_the_drivers_worker_is_not_overrun() {
    assert_eq!(flood(200_000, None, true), (200_000, 0), "default capacity");
    assert_eq!(flood(50_000, Some(64), true), (50_000, 0), "capacity 64");
}
