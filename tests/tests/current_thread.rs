//! phx-tokio on a current-thread runtime, where the driver and the application take turns on
//! one thread: the driver must hand the thread back often enough that a flood never overruns
//! a reader that keeps reading; and commands the application issues together reach the driver
//! in one batch, which makes their interplay deterministic.

use std::time::Duration;

use futures::FutureExt;
use phx_client::{Builder, PushError, PushFailure};
use phx_proto::Payload;
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::support::{read_flood, read_flood_of};
use phx_tokio::{Socket, Tokio};
use serde_json::json;

/// A current-thread tokio runtime with IO and timers.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A socket connected to `h` with the test server's credentials.
async fn connect(h: &BackgroundServer) -> Socket {
    Socket::builder(&h.url())
        .secret_param("token", "secret")
        .connect()
        .await
        .unwrap()
}

/// [`read_flood`] on a current-thread runtime.
fn flood(n: u64, capacity: Option<usize>) -> (u64, u64) {
    current_thread().block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        read_flood::<Tokio>(&h, n, capacity, false).await
    })
}

#[test]
fn a_flood_reaches_a_prompt_reader_without_loss() {
    assert_eq!(flood(500_000, None), (500_000, 0), "default capacity");
}

#[test]
fn a_small_stream_is_not_overrun_either() {
    assert_eq!(flood(100_000, Some(64)), (100_000, 0), "capacity 64");
    // Below 64 a quarter is under the 16 frames a turn once read at least.
    assert_eq!(flood(20_000, Some(8)), (20_000, 0), "capacity 8");
    assert_eq!(flood(5_000, Some(1)), (5_000, 0), "capacity 1");
}

/// A flood of 1 KB messages to a stream whose byte budget (64 KiB) binds long before its count:
/// the driver also reads at most a quarter of the budget before it hands the thread back, so
/// a prompt reader loses nothing. (Limited by count alone, a round of 1,024 such frames lost
/// 73% of 50,000.)
#[test]
fn large_messages_do_not_overrun_a_prompt_reader_either() {
    const N: u64 = 20_000;
    let counts = current_thread().block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        let payload = Payload::json(&json!({ "blob": "x".repeat(1000) })).unwrap();
        let budget = |b: Builder<Tokio>| b.channel_capacity_bytes(64 * 1024);
        read_flood_of::<Tokio>(&h, N, payload, budget, false).await
    });
    assert_eq!(counts, (N, 0));
}

/// `disconnect()` and `connect()` issued together (queued behind a push awaiting its reply,
/// so both reach the driver in one batch): both resolve. `disconnect()` used to wait for the
/// new connection to end too, forever.
#[test]
fn disconnect_then_connect_in_one_batch_both_resolve() {
    current_thread().block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        let socket = connect(&h).await;
        let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
        let pending =
            lobby.push_payload("noreply", Payload::empty(), Some(Duration::from_secs(10)));
        let disconnect = async {
            futures::select_biased! {
                r = socket.disconnect().fuse() => Some(r),
                () = tokio::time::sleep(Duration::from_secs(3)).fuse() => None,
            }
        };
        let (p, d, c) = futures::join!(pending, disconnect, socket.connect());
        assert_eq!(p, Err(PushError::Failed(PushFailure::Disconnected)));
        c.unwrap();
        assert_eq!(d, Some(Ok(())), "disconnect() never resolved");
        let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
        assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
    });
}

/// More pushes issued together than the command queue holds (1,024), all queued before the
/// driver runs: the callers past the bound wait on senders of their own, and every push is
/// answered, in order.
#[test]
fn more_pushes_at_once_than_the_command_queue_holds_are_all_answered() {
    current_thread().block_on(async {
        let h = BackgroundServer::start(ServerConfig::default());
        let socket = connect(&h).await;
        let (room, _) = socket.channel("room:many").join().await.unwrap();
        let payloads: Vec<_> = (0..3000u32).map(|i| json!({ "i": i })).collect();
        let pushes = payloads.iter().map(|p| room.push("ping", p));
        let replies = futures::future::join_all(pushes).await;
        for (i, reply) in (0u32..).zip(replies) {
            let reply = reply.unwrap();
            assert!(reply.is_ok());
            assert_eq!(
                reply.decode::<serde_json::Value>().unwrap(),
                json!({ "i": i })
            );
        }
    });
}
