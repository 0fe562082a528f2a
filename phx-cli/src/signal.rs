//! Ctrl-C.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that completes on Ctrl-C (SIGINT).
pub(crate) type CtrlC = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Listens for Ctrl-C from now on. tokio installs its handler when the future is first polled,
/// so it is polled once here: a Ctrl-C that comes after phx printed its first line is then
/// always seen, never the default "kill at once". When no handler can be installed, the
/// future never completes (and Ctrl-C keeps its default effect).
pub(crate) fn ctrl_c() -> CtrlC {
    let mut signal = Box::pin(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            crate::output::error_line(&format!("cannot listen for Ctrl-C: {e}"));
            std::future::pending::<()>().await;
        }
    });
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match signal.as_mut().poll(&mut cx) {
        Poll::Ready(()) => Box::pin(async {}),
        Poll::Pending => signal,
    }
}
