//! Phoenix Channels client for tokio.
//!
//! One driver task owns the connection (a [`phx_proto::Socket`] state machine, the
//! WebSocket and one timer); [`Socket`] and [`Channel`] are cheap cloneable
//! handles. Joins and pushes are futures returning `Result`s; messages and events are
//! [`futures::Stream`](https://docs.rs/futures)s. Reconnects and rejoins happen by themselves.
//!
//! ```no_run
//! use futures::StreamExt;
//! use phx_tokio::Socket;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = Socket::builder("ws://localhost:4000/socket")
//!     .secret_param("token", "secret")
//!     .connect()
//!     .await?;
//! let (lobby, _reply) = socket
//!     .channel("room:lobby")
//!     .params(&serde_json::json!({ "user": "alice" }))
//!     .join()
//!     .await?;
//! let reply = lobby.push("ping", &serde_json::json!({ "n": 1 })).await?;
//! println!("ping answered: {:?}", reply.response);
//! let mut messages = lobby.messages();
//! while let Some(Ok(msg)) = messages.next().await {
//!     println!("{} {:?}", msg.event, msg.payload);
//! }
//! # Ok(()) }
//! ```
//!
//! The API is the same as `phx-async-std`'s: switching runtimes changes the crate name. See
//! [`phx_client`] for the queueing policy and the full API.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `rustls-tls-webpki-roots` | yes | `wss://` through rustls, trusting the bundled Mozilla roots |
//! | `rustls-tls-native-roots` | | `wss://` through rustls, trusting the operating system's roots |
//! | `native-tls` | | `wss://` through the platform library; select it with `Builder::use_native_tls` |
//!
//! Certificate verification is always on, unless `danger_accept_invalid_certs(true)` says
//! otherwise; `add_root_certificate_pem` trusts a private CA.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncRead as _, AsyncWrite as _, ReadBuf};

phx_client::adapter_api!(Tokio, "tokio");

/// The tokio runtime seam: tokio's clock (so paused test time works), timers, `tokio::spawn`,
/// and tokio's TCP streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl phx_client::Runtime for Tokio {
    type Tcp = Tcp;
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(future);
    }

    fn cannot_spawn(&self) -> Option<&'static str> {
        tokio::runtime::Handle::try_current().is_err().then_some(
            "no tokio runtime is running on this thread (call it from #[tokio::main], \
             Runtime::block_on or inside Runtime::enter)",
        )
    }

    fn context(&self) -> Option<u64> {
        // A timer belongs to the runtime it is made in: only the driver's own will do.
        use std::hash::{DefaultHasher, Hash, Hasher};
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let mut hasher = DefaultHasher::new();
        handle.id().hash(&mut hasher);
        Some(hasher.finish())
    }

    fn shares_thread(&self) -> bool {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    }

    fn yield_now(&self, cx: &mut Context<'_>) {
        // tokio's own yield hands the waker to the scheduler, which wakes the task only after
        // running the other ready tasks (and, on a current-thread runtime, the application's
        // future); waking at once would put the driver straight back in front of them.
        let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
    }

    // Not an `async fn`: the future must be 'static, so it cannot borrow `self`.
    #[allow(clippy::manual_async_fn)]
    fn connect_tcp(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Tcp>> + Send + 'static {
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(Tcp(tcp))
        }
    }
}

/// A tokio TCP connection seen through futures' IO traits, which phx's WebSocket reads.
#[derive(Debug)]
pub struct Tcp(tokio::net::TcpStream);

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_a_socket_outside_a_tokio_runtime_is_an_error_not_a_panic() {
        let lazy = Socket::builder("ws://127.0.0.1:9/socket").connect_lazy();
        assert!(
            matches!(lazy, Err(ConnectError::Runtime(why)) if why.contains("no tokio runtime")),
            "{lazy:?}"
        );
        let eager =
            futures::executor::block_on(Socket::builder("ws://127.0.0.1:9/socket").connect());
        assert!(matches!(eager, Err(ConnectError::Runtime(_))), "{eager:?}");
        // Inside one, it starts.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _in = rt.enter();
        assert!(
            Socket::builder("ws://127.0.0.1:9/socket")
                .connect_lazy()
                .is_ok()
        );
    }
}
