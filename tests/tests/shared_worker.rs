//! A reader in a task on the worker thread the driver runs on. tokio runs a task woken from a
//! worker on that worker, after the task that woke it: a driver that read more than the
//! reader's stream holds before giving the thread up would overrun a reader that keeps
//! reading. A runtime with one worker makes that the only schedule.
//!
//! The driver gives the thread up once a stream it fed is half full, which leaves the other
//! half for a round read before the reader gets its turn; and it yields through the runtime
//! (`tokio::task::yield_now`) rather than by waking itself, so that a reader waiting in any of
//! tokio's queues runs first. Here the reader is also woken from the test server's thread (the
//! answer to the broadcast call): such a task waits in the queue a busy worker looks at only
//! every few dozen tasks, and with the driver waking itself a stream of 8 lost 98 of 20,000
//! messages in 7 of 20 runs on a loaded machine.

use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::support::read_flood;
use phx_tokio::Tokio;

/// [`read_flood`] from a reader spawned on a one-worker multi-thread runtime.
fn flood(n: u64, capacity: Option<usize>, filtered: bool) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reader = rt.spawn(async move {
        let h = BackgroundServer::start(ServerConfig::default());
        read_flood::<Tokio>(&h, n, capacity, filtered).await
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
    assert_eq!(flood(20_000, Some(8), false), (20_000, 0), "capacity 8");
    assert_eq!(flood(5_000, Some(1), false), (5_000, 0), "capacity 1");
}

#[test]
fn a_filtered_reader_on_the_drivers_worker_is_not_overrun() {
    assert_eq!(flood(200_000, None, true), (200_000, 0), "default capacity");
    assert_eq!(flood(50_000, Some(64), true), (50_000, 0), "capacity 64");
}
