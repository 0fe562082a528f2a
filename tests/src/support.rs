//! Helpers the async test suites share, generic over the client runtime: sleeping and timeouts
//! on the client's own clock, waiting for an event, reading a flood, and running a scenario on
//! tokio.

use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use phx_client::{Builder, Event, Events, Lagged, Messages, Runtime, Socket};
use phx_proto::Payload;
use serde_json::json;

use crate::server::ws::BackgroundServer;

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

/// Connects a socket to `h` (message streams of `capacity`, phx's default with `None`), joins
/// `room:flood`, has `h` broadcast `n` messages there, and reads them as fast as it can from
/// the channel's stream, or with `filtered` from its stream for the `flood` event. Returns what
/// was received and what was reported lost.
///
/// # Panics
/// If the socket or the join fails, the stream ends, or the flood takes over a minute.
pub async fn read_flood<R: Runtime + Default>(
    h: &BackgroundServer,
    n: u64,
    capacity: Option<usize>,
    filtered: bool,
) -> (u64, u64) {
    let payload =
        Payload::json(&json!({"user": "alice", "body": "hello", "id": 1})).expect("a JSON payload");
    let configure = |builder: Builder<R>| match capacity {
        Some(c) => builder.channel_capacity(c),
        None => builder,
    };
    read_flood_of(h, n, payload, configure, filtered).await
}

/// [`read_flood`] of `n` copies of `payload`, on a socket whose builder `configure` finishes.
///
/// # Panics
/// As [`read_flood`].
pub async fn read_flood_of<R: Runtime + Default>(
    h: &BackgroundServer,
    n: u64,
    payload: Payload,
    configure: impl FnOnce(Builder<R>) -> Builder<R>,
    filtered: bool,
) -> (u64, u64) {
    let builder = Socket::<R>::builder(&h.url())
        .secret_param("token", "secret")
        .heartbeat(Duration::from_secs(30));
    let socket = configure(builder).connect().await.expect("connect");
    let (room, _) = socket.channel("room:flood").join().await.expect("join");
    let mut messages = if filtered {
        room.on("flood")
    } else {
        room.messages()
    };
    // The server starts sending before it answers the call: reading starts at once.
    let (reached, counts) = futures::join!(
        h.broadcast_repeated("room:flood", "flood", payload, n),
        read_messages::<R>(&mut messages, n)
    );
    assert_eq!(reached, 1, "one subscriber");
    counts
}

/// Reads `messages` until `n` have been received or reported lost; returns the two counts.
///
/// # Panics
/// If the stream ends, or the `n` take over a minute.
pub async fn read_messages<R: Runtime + Default>(messages: &mut Messages, n: u64) -> (u64, u64) {
    within::<R, _>(Duration::from_secs(60), "the messages", async {
        let (mut received, mut lagged) = (0u64, 0u64);
        while received + lagged < n {
            match messages.next().await {
                Some(Ok(_)) => received += 1,
                Some(Err(Lagged(k))) => lagged += k,
                None => panic!("the stream ended"),
            }
        }
        (received, lagged)
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
