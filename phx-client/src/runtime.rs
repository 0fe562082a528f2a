//! The seam between the shared client and an async runtime: a clock, timers, spawning and
//! opening TCP connections. Everything else (handles, commands, the driver loop, TLS and the
//! WebSocket) is written once, here.

use std::future::Future;
use std::io;
use std::task::Context;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};

/// What an adapter provides. `phx-tokio` and `phx-async-std` implement it in a few dozen lines.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// An open TCP connection, seen through futures' IO traits.
    type Tcp: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// A timer future.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// The runtime's clock (virtual time in tests that pause it).
    fn now(&self) -> Instant;

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Runs `future` in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Why [`Runtime::spawn`] cannot run here, if it cannot (tokio's panics outside a tokio
    /// runtime): `connect` and `connect_lazy` then return [`crate::ConnectError::Runtime`]
    /// instead. The default says it always can.
    fn cannot_spawn(&self) -> Option<&'static str> {
        None
    }

    /// Whether the driver, polled from inside the runtime, shares its thread with the
    /// application's futures (a current-thread executor). It then reads at most a quarter of a
    /// message stream's capacity (at least one frame, at most 1,024) per turn and yields with
    /// [`Runtime::yield_now`], so that a reader that keeps reading is never overrun. The default
    /// says no.
    fn shares_thread(&self) -> bool {
        false
    }

    /// Which executor the calling thread runs in, as a number that tells executors apart. A
    /// handle called from the same executor as its driver may carry out a push on its own task
    /// (setting the driver's timers) when the driver is idle, instead of waking the driver's
    /// task for it. The default, `None`, turns that shortcut off.
    fn context(&self) -> Option<u64> {
        None
    }

    /// Whether a task waiting for the reply to a lone push should read it from the socket
    /// itself rather than leave it to the driver's task. Worth it where the caller's
    /// `block_on` runs the reactor (async-std): the reply then reaches the caller with no
    /// thread hop instead of two. The default says no.
    fn reads_on_caller(&self) -> bool {
        false
    }

    /// Asks to be polled again after the executor's other ready tasks have had their turn
    /// (used when [`Runtime::shares_thread`], and when a message stream the driver fed is half
    /// full, in case its reader waits for this thread). The default wakes the task at once.
    fn yield_now(&self, cx: &mut Context<'_>) {
        cx.waker().wake_by_ref();
    }

    /// Opens a TCP connection to `host` (a name or an IP address, without brackets) and
    /// `port`, with Nagle's algorithm off (a push goes out at once).
    fn connect_tcp(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Tcp>> + Send + 'static;
}
