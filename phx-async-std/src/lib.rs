//! Phoenix Channels client for async-std, and for smol.
//!
//! The same API as `phx-tokio` (switching runtimes changes the crate name): one driver task owns
//! the connection (a [`phx_proto::Socket`] state machine, the WebSocket and one timer);
//! [`Socket`] and [`Channel`] are cheap cloneable handles.
//!
//! Timers and IO come from async-io, the reactor async-std and smol share, so the client also
//! runs inside a smol executor; the driver task is spawned on async-std's executor.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `rustls-tls-webpki-roots` | yes | `wss://` through rustls, trusting the bundled Mozilla roots |
//! | `rustls-tls-native-roots` | | `wss://` through rustls, trusting the operating system's roots |
//! | `native-tls` | | `wss://` through the platform library; select it with `Builder::use_native_tls` |
//!
//! ```no_run
//! use futures::StreamExt;
//! use phx_async_std::Socket;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = Socket::builder("ws://localhost:4000/socket")
//!     .secret_param("token", "secret")
//!     .connect()
//!     .await?;
//! let (lobby, _reply) = socket.channel("room:lobby").join().await?;
//! let reply = lobby.push("ping", &serde_json::json!({ "n": 1 })).await?;
//! println!("ping answered: {:?}", reply.response);
//! let mut messages = lobby.messages();
//! while let Some(Ok(msg)) = messages.next().await {
//!     println!("{} {:?}", msg.event, msg.payload);
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_std::net::TcpStream;

phx_client::adapter_api!(AsyncStd, "async-std");

/// The async-std runtime seam: the system clock, async-io timers, `async_std::task::spawn` and
/// async-std's TCP streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

/// An async-io timer that completes with `()`.
#[derive(Debug)]
pub struct Sleep(async_io::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

impl phx_client::Runtime for AsyncStd {
    type Tcp = TcpStream;
    type Sleep = Sleep;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        Sleep(async_io::Timer::at(deadline))
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        async_std::task::spawn(future);
    }

    fn reads_on_caller(&self) -> bool {
        // `block_on` runs async-io's reactor on the caller's thread: a caller that reads its
        // own reply is woken there directly.
        true
    }

    fn context(&self) -> Option<u64> {
        // One global executor, and async-io's timers work from any thread.
        Some(0)
    }

    // Not an `async fn`: the future must be 'static, so it cannot borrow `self`.
    #[allow(clippy::manual_async_fn)]
    fn connect_tcp(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = std::io::Result<TcpStream>> + Send + 'static {
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        }
    }
}
