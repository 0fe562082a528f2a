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
use phx_client::Payload;
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::support::read_messages;
use phx_tokio::{Socket, Tokio};
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

/// A test server, a socket connected to it, and the payload its floods carry.
async fn connected() -> (BackgroundServer, Socket, Payload) {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = Socket::builder(&h.url())
        .secret_param("token", "secret")
        .heartbeat(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let payload = Payload::json(&json!({"user": "alice", "body": "hello", "id": 1})).unwrap();
    (h, socket, payload)
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
            h.broadcast_repeated(&topic, "flood", payload.clone(), BURST)
                .await;
            read_messages::<Tokio>(&mut messages, BURST).await;
            // Quiet now: the reader, still waiting on its stream, gives the burst's buffers
            // back once the connection has had nothing more to read for the grace period
            // (50 ms).
            let quiet = tokio::time::timeout(Duration::from_millis(200), messages.next());
            assert!(quiet.await.is_err(), "nothing more was sent");
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
