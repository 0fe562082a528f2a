//! Phoenix Channels client for tokio.
//!
//! One driver task owns the connection (a [`phx_proto::Socket`] state machine, the
//! tokio-tungstenite WebSocket and one timer); [`Socket`] and [`Channel`] are cheap cloneable
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
use std::task::Context;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::{Error as WsError, protocol::WebSocketConfig};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use phx_client::TlsConnector;

phx_client::adapter_api!(Tokio, "tokio");

/// The tokio runtime seam: tokio's clock (so paused test time works), timers, `tokio::spawn`,
/// and tokio-tungstenite for dialing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl phx_client::Runtime for Tokio {
    type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;
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
    fn connect(
        &self,
        request: Request,
        config: WebSocketConfig,
        tls: Option<TlsConnector>,
    ) -> impl Future<Output = Result<Self::WebSocket, WsError>> + Send + 'static {
        async move {
            let connector = match tls {
                #[cfg(any(
                    feature = "rustls-tls-webpki-roots",
                    feature = "rustls-tls-native-roots"
                ))]
                Some(TlsConnector::Rustls(config)) => Some(Connector::Rustls(config)),
                #[cfg(feature = "native-tls")]
                Some(TlsConnector::NativeTls(settings)) => match settings.builder().build() {
                    Ok(c) => Some(Connector::NativeTls(c)),
                    Err(e) => return Err(WsError::Tls(e.into())),
                },
                #[allow(unreachable_patterns)]
                _ => None,
            };
            connect(request, config, connector).await
        }
    }
}

/// Dials through tokio-tungstenite. Without a TLS feature, `wss://` fails with tungstenite's
/// "TLS support not compiled in".
async fn connect(
    request: Request,
    config: WebSocketConfig,
    connector: Option<Connector>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, WsError> {
    #[cfg(any(
        feature = "rustls-tls-webpki-roots",
        feature = "rustls-tls-native-roots",
        feature = "native-tls"
    ))]
    let dial =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    #[cfg(not(any(
        feature = "rustls-tls-webpki-roots",
        feature = "rustls-tls-native-roots",
        feature = "native-tls"
    )))]
    let dial = {
        let _ = connector;
        tokio_tungstenite::connect_async_with_config(request, Some(config), true)
    };
    let (ws, _response) = dial.await?;
    Ok(ws)
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
