//! A burst's buffers go back once its reader has caught up: channels that each took a flood
//! and then went quiet hold no more memory than channels that never did.
//!
//! One test in its own binary: it counts every allocation of the process, so nothing else may
//! run beside it.

use std::alloc::System;
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

fn heap_now(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[test]
fn channels_that_took_a_burst_give_its_buffers_back_once_read() {
    const CHANNELS: usize = 16;
    const BURST: u64 = 20_000;
    let region = Region::new(GLOBAL);
    // The default runtime: the reader runs on another thread than the driver, as in most
    // applications.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        let socket = Socket::builder(&h.url())
            .secret_param("token", "secret")
            .heartbeat(Duration::from_secs(30))
            .connect()
            .await
            .unwrap();
        let payload = Payload::json(&json!({"user": "alice", "body": "hello", "id": 1})).unwrap();
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
            // back once the driver finds the connection with nothing more to read.
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
