//! Phoenix Channels client for async-std, and for smol.
//!
//! The same API as `phx-tokio` (switching runtimes changes the crate name): one driver task owns
//! the connection (a [`phx_proto::Socket`] state machine, the async-tungstenite WebSocket and
//! one timer); [`Socket`] and [`Channel`] are cheap cloneable handles.
//!
//! Timers and IO come from async-io, the reactor async-std and smol share, so the client also
//! runs inside a smol executor; the driver task is spawned on async-std's executor.
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
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::UrlError;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::{Error as WsError, protocol::WebSocketConfig};

pub use phx_client::{
    Backoff, ChannelId, CloseReason, ConnectError, Credentials, DisconnectReason, Event, Events,
    JoinError, Lagged, LeaveError, Message, Messages, Payload, PayloadError, PushError,
    PushFailure, Reply, SocketClosed, Stats, WebSocketConfig as WsConfig,
};
pub use phx_proto as proto;

/// The async-std runtime seam: the system clock, async-io timers, `async_std::task::spawn`, and
/// async-tungstenite for dialing.
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
    type WebSocket = WebSocketStream<TcpStream>;
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

    // Not an `async fn`: the future must be 'static, so it cannot borrow `self`.
    #[allow(clippy::manual_async_fn)]
    fn connect(
        &self,
        request: Request,
        config: WebSocketConfig,
    ) -> impl Future<Output = Result<Self::WebSocket, WsError>> + Send + 'static {
        async move {
            let uri = request.uri();
            if uri.scheme_str() == Some("wss") {
                return Err(WsError::Url(UrlError::TlsFeatureNotEnabled));
            }
            let host = uri
                .host()
                .ok_or(WsError::Url(UrlError::NoHostName))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let (ws, _response) =
                async_tungstenite::client_async_with_config(request, tcp, Some(config)).await?;
            Ok(ws)
        }
    }
}

/// A Phoenix socket on async-std. See [`phx_client::Socket`].
pub type Socket = phx_client::Socket<AsyncStd>;
/// A joined channel on async-std. See [`phx_client::Channel`].
pub type Channel = phx_client::Channel<AsyncStd>;
/// Configures a [`Socket`]. See [`phx_client::Builder`].
pub type Builder = phx_client::Builder<AsyncStd>;
/// A channel to be joined. See [`phx_client::ChannelBuilder`].
pub type ChannelBuilder = phx_client::ChannelBuilder<AsyncStd>;
/// The driver future, for applications that spawn it themselves.
pub type Driver = phx_client::Driver<AsyncStd>;
