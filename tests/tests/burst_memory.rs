//! A burst's buffers go back once its reader has caught up: channels that each took a flood
//! and then went quiet hold no more memory than channels that never did. And only then: a
//! flood that pauses for a moment keeps them, rather than freeing and growing them again at
//! every pause.
//!
//! The tests count every allocation of the process, so they take turns.

use std::alloc::System;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use phx_client::{Messages, Payload};
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::support::read_messages;
use phx_tokio::{Builder, Socket, Tokio};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Held by each test while it counts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn heap_now(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// A socket's settings for `h`.
fn builder(h: &BackgroundServer) -> Builder {
    Socket::builder(&h.url())
        .secret_param("token", "secret")
        .heartbeat(Duration::from_secs(30))
}

/// The payload the floods carry.
fn flood_payload() -> Payload {
    Payload::json(&json!({"user": "alice", "body": "hello", "id": 1})).unwrap()
}

/// A test server, a socket connected to it, and the payload its floods carry.
async fn connected() -> (BackgroundServer, Socket, Payload) {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder(&h).connect().await.unwrap();
    (h, socket, flood_payload())
}

/// Floods `topic` with `n` messages, reads them all from `messages`, and waits until the
/// connection is quiet: the reader, still waiting on its stream, gives the burst's buffers
/// back once the connection has had nothing more to read for the grace period (50 ms).
async fn take_burst(
    h: &BackgroundServer,
    topic: &str,
    payload: &Payload,
    messages: &mut Messages,
    n: u64,
) {
    h.broadcast_repeated(topic, "flood", payload.clone(), n)
        .await;
    read_messages::<Tokio>(messages, n).await;
    let quiet = tokio::time::timeout(Duration::from_millis(200), messages.next());
    assert!(quiet.await.is_err(), "nothing more was sent");
}

#[test]
fn channels_that_took_a_burst_give_its_buffers_back_once_read() {
    const CHANNELS: usize = 16;
    const BURST: u64 = 20_000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let region = Region::new(GLOBAL);
    // The default runtime: the reader runs on another thread than the driver, as in most
    // applications.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (h, socket, payload) = connected().await;
        let mut held = Vec::new();
        let mut after_first = 0;
        for i in 0..CHANNELS {
            let topic = format!("room:burst{i}");
            let (channel, _) = socket.channel(topic.clone()).join().await.unwrap();
            let mut messages = channel.messages();
            take_burst(&h, &topic, &payload, &mut messages, BURST).await;
            if i == 0 {
                after_first = heap_now(&region);
            }
            held.push((channel, messages));
        }
        // What the process holds at any moment moves by up to about 150 KB between runs (socket
        // and allocator buffers), some 10 KB per channel here; a kept burst is 1 MB.
        let per_channel = (heap_now(&region) - after_first) / (CHANNELS as isize - 1);
        assert!(
            per_channel < 64 * 1024,
            "{per_channel} bytes kept per channel after its burst was read"
        );
        drop(held);
    });
}

/// The read buffer a burst grows (to 128 KiB) goes back to its configured size (16 KiB by
/// default) once the connection is quiet. The test server runs in this process, and keeps
/// buffers of its own for each connection that took a burst, so the sockets with the default
/// are compared with sockets configured with a 128 KiB buffer, allocated at their first read
/// (before the burst) and never grown: a default socket whose buffer stayed grown would add
/// 112 KiB more than they do over the burst.
#[test]
fn sockets_that_took_a_burst_give_their_read_buffer_back_once_quiet() {
    const SOCKETS: usize = 4;
    const BURST: u64 = 20_000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        let payload = flood_payload();
        let mut groups = Vec::new();
        // The first group only warms up what every burst grows once.
        for read_buffer in [None, None, Some(128 * 1024)] {
            let mut sockets = Vec::new();
            for _ in 0..SOCKETS {
                let mut builder = builder(&h);
                if let Some(bytes) = read_buffer {
                    builder = builder.read_buffer_size(bytes);
                }
                let socket = builder.connect().await.unwrap();
                let topic = format!("room:sock{}", groups.len() * SOCKETS + sockets.len());
                let (channel, _) = socket.channel(topic.clone()).join().await.unwrap();
                let messages = channel.messages();
                sockets.push((topic, socket, channel, messages));
            }
            groups.push(sockets);
        }
        let mut kept = Vec::new();
        for sockets in &mut groups {
            let region = Region::new(GLOBAL);
            for (topic, _, _, messages) in sockets.iter_mut() {
                take_burst(&h, topic, &payload, messages, BURST).await;
            }
            kept.push(heap_now(&region) / SOCKETS as isize);
        }
        let (default, configured) = (kept[1], kept[2]);
        assert!(
            default < configured + 48 * 1024,
            "per socket after a burst: {default} bytes kept with the default read buffer, \
             {configured} with a 128 KiB one"
        );
        drop(groups);
    });
}

#[test]
fn a_flood_that_pauses_keeps_its_buffers() {
    const PULSES: u64 = 20;
    const PULSE: u64 = 2_000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (h, socket, payload) = connected().await;
        let (channel, _) = socket.channel("room:pulses").join().await.unwrap();
        let mut messages = channel.messages();
        // The first pulse grows the buffers.
        h.broadcast_repeated("room:pulses", "flood", payload.clone(), PULSE)
            .await;
        read_messages::<Tokio>(&mut messages, PULSE).await;
        let region = Region::new(GLOBAL);
        for _ in 0..PULSES {
            // Each pulse is read to the end, so the connection runs dry before the next.
            tokio::time::sleep(Duration::from_millis(1)).await;
            h.broadcast_repeated("room:pulses", "flood", payload.clone(), PULSE)
                .await;
            read_messages::<Tokio>(&mut messages, PULSE).await;
        }
        // Freeing the buffers at a pause and growing them again for the next pulse costs about
        // 25 reallocations (the driver's batch and the core's queue, doubling up to a read
        // round) and 600 KB reallocated per pause; kept, none. A pause stretched past the grace
        // period by a busy machine may free them, so a few are let through.
        let stats = region.change();
        assert!(
            stats.reallocations < 5 * PULSES as usize,
            "{} reallocations ({} bytes) over {PULSES} pauses",
            stats.reallocations,
            stats.bytes_reallocated
        );
        drop((channel, messages));
    });
}
