//! Phoenix Channels client for async-std, and for smol.
//!
//! The same API as `phx-tokio` (switching runtimes changes the crate name): one driver task owns
//! the connection (a [`phx_proto::Socket`] state machine, the async-tungstenite WebSocket and
//! one timer); [`Socket`] and [`Channel`] are cheap cloneable handles.
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
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::UrlError;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::{Error as WsError, protocol::WebSocketConfig};
use futures::io::{AsyncRead, AsyncWrite};
use phx_client::TlsConnector;

phx_client::adapter_api!(AsyncStd, "async-std");

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

/// A TCP stream, plain or wrapped in TLS.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` through rustls.
    #[cfg(feature = "__rustls")]
    Rustls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// `wss://` through native-tls.
    #[cfg(feature = "native-tls")]
    NativeTls(Box<async_native_tls::TlsStream<TcpStream>>),
}

/// Forwards an IO call to whichever stream is inside.
macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => $e,
            #[cfg(feature = "__rustls")]
            MaybeTlsStream::Rustls($s) => $e,
            #[cfg(feature = "native-tls")]
            MaybeTlsStream::NativeTls($s) => $e,
        }
    };
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_close(cx))
    }
}

/// Wraps `tcp` in TLS for `host`.
async fn secure(
    host: &str,
    tcp: TcpStream,
    tls: Option<TlsConnector>,
) -> Result<MaybeTlsStream, WsError> {
    match tls {
        #[cfg(feature = "__rustls")]
        Some(TlsConnector::Rustls(config)) => {
            use async_tungstenite::tungstenite::error::TlsError;
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| WsError::Tls(TlsError::InvalidDnsName))?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(MaybeTlsStream::Rustls(Box::new(stream)))
        }
        #[cfg(feature = "native-tls")]
        Some(TlsConnector::NativeTls(settings)) => {
            let stream = async_native_tls::TlsConnector::from(settings.builder())
                .connect(host, tcp)
                .await
                .map_err(|e| WsError::Tls(e.into()))?;
            Ok(MaybeTlsStream::NativeTls(Box::new(stream)))
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (host, tcp);
            Err(WsError::Url(UrlError::TlsFeatureNotEnabled))
        }
    }
}

impl phx_client::Runtime for AsyncStd {
    type WebSocket = WebSocketStream<MaybeTlsStream>;
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
    fn connect(
        &self,
        request: Request,
        config: WebSocketConfig,
        tls: Option<TlsConnector>,
    ) -> impl Future<Output = Result<Self::WebSocket, WsError>> + Send + 'static {
        async move {
            let uri = request.uri();
            let secure_scheme = uri.scheme_str() == Some("wss");
            let host = uri
                .host()
                .ok_or(WsError::Url(UrlError::NoHostName))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if secure_scheme { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = if secure_scheme {
                secure(&host, tcp, tls).await?
            } else {
                MaybeTlsStream::Plain(tcp)
            };
            let (ws, _response) =
                async_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
            Ok(ws)
        }
    }
}
