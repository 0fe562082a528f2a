//! Helpers the async test suites share, generic over the client runtime: sleeping and timeouts
//! on the client's own clock, waiting for an event, and running a scenario on tokio.

use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use phx_client::{Event, Events, Runtime};

/// Sleeps on runtime `R`'s clock.
pub async fn sleep<R: Runtime + Default>(d: Duration) {
    let rt = R::default();
    rt.sleep_until(rt.now() + d).await;
}

/// Runs `f`, panicking (naming `what`) if it takes longer than `d`.
///
/// # Panics
/// On timeout.
pub async fn within<R: Runtime + Default, F: Future>(d: Duration, what: &str, f: F) -> F::Output {
    futures::select_biased! {
        out = f.fuse() => out,
        () = sleep::<R>(d).fuse() => panic!("timed out after {d:?} waiting for {what}"),
    }
}

/// Waits for the next event matching `pred`, skipping others.
///
/// # Panics
/// On timeout, or if the stream ends.
pub async fn wait_event<R: Runtime + Default>(
    events: &mut Events,
    d: Duration,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    within::<R, _>(d, what, async {
        loop {
            match events.next().await {
                Some(Ok(e)) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended waiting for {what}"),
            }
        }
    })
    .await
}

/// Runs `scenario` to completion on a new two-thread tokio runtime.
///
/// # Panics
/// If the runtime cannot be built, or the scenario panics.
pub fn block_on_tokio<F: Future>(scenario: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
        .block_on(scenario)
}
