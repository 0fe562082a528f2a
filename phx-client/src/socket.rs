//! The user-facing handles: [`Builder`], [`Socket`], [`ChannelBuilder`], [`Channel`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use phx_proto::{
    Backoff, ByteStr, ChannelId, Config, ConfigBuilder, ConfigError, Event, JoinOptions, Message,
    Payload, PayloadError, PresenceChange, PresenceEntry, PresenceEvents, Serializer, Stats,
    Unexpected,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tungstenite::protocol::WebSocketConfig;

use crate::driver::{Command, Direct, Driver, Held};
use crate::error::{ConnectError, JoinError, LeaveError, PushError, SocketClosed};
use crate::inbox::{self, Inbox, Receiver, Source};
use crate::oneshot;
use crate::route::OwnReply;
use crate::runtime::Runtime;
use crate::tls::TlsOptions;

/// A stream of a channel's messages: `Ok(message)`, or `Err(Lagged(n))` where `n` messages
/// were dropped because the consumer fell behind (see [`Builder::channel_capacity`]).
pub type Messages = Receiver<Message>;

/// A stream of socket and channel lifecycle events (see [`Socket::events`]).
pub type Events = Receiver<Event>;

/// A reply to a join or a push: its status and the server's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `ok`, `error`, or a custom status the server channel chose.
    pub status: ByteStr,
    /// The response payload (JSON or binary).
    pub response: Payload,
}

impl Reply {
    /// Whether the status is `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// Deserializes the response.
    ///
    /// # Errors
    /// [`PayloadError`] if the response is binary or does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.response.decode()
    }

    pub(crate) fn response_text(&self) -> String {
        match self.response.as_json_str() {
            Some(s) => s.chars().take(200).collect(),
            None => format!("<{} binary bytes>", self.response.as_bytes().len()),
        }
    }
}

/// Produces fresh connect credentials before every connection attempt.
pub(crate) type CredentialsFn = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Credentials, String>> + Send>> + Send + Sync,
>;

/// Credentials computed before a connection attempt by a callback given to
/// [`Builder::credentials`]: params (treated as secrets) and an optional auth token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// URL params to set (replacing any with the same key).
    pub params: Vec<(String, String)>,
    /// The auth token, sent in `Sec-WebSocket-Protocol`. `None` leaves the token as it is (one
    /// given to [`Builder::auth_token`] or [`Socket::set_auth_token`]); to stop sending one,
    /// call `set_auth_token(None)`.
    pub auth_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Default size of a connection's read buffer; tungstenite's own default (128 KiB) is most of
/// an idle socket's memory, since it is allocated and zero-filled up front.
const DEFAULT_READ_BUFFER: usize = 16 * 1024;

/// Default message count of a message stream (async-nats's subscription default). A count
/// costs nothing until a reader falls behind; 4,096 filled in under a millisecond of a flood
/// whenever the OS took the reader's core for one time slice (see the README's "Slow
/// consumers").
const DEFAULT_CHANNEL_CAPACITY: usize = 65_536;

/// Default byte budget of a message stream: tungstenite's largest message, so that the budget
/// never binds before the count for messages of the usual sizes.
const DEFAULT_CHANNEL_BYTES: usize = 64 << 20;

/// Driver settings that are not protocol settings.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) channel_capacity: usize,
    pub(crate) channel_capacity_bytes: usize,
    pub(crate) event_capacity: usize,
    pub(crate) command_capacity: usize,
    pub(crate) websocket: WebSocketConfig,
    pub(crate) credentials: Option<CredentialsFn>,
    pub(crate) close_timeout: Duration,
    pub(crate) tls: TlsOptions,
}

impl Options {
    /// Refuses what the driver or tungstenite cannot work with (tungstenite panics on some).
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason| Err(ConfigError::Invalid { setting, reason });
        let ws = &self.websocket;
        if self.channel_capacity == 0 {
            return invalid("channel_capacity", "must be at least 1");
        }
        if self.channel_capacity_bytes == 0 {
            return invalid("channel_capacity_bytes", "must be at least 1 byte");
        }
        if self.event_capacity == 0 {
            return invalid("event_capacity", "must be at least 1");
        }
        if ws.read_buffer_size == 0 {
            return invalid("read_buffer_size", "must be at least 1 byte");
        }
        if ws.max_message_size == Some(0) {
            return invalid("max_message_size", "must be at least 1 byte");
        }
        if ws.max_frame_size == Some(0) {
            return invalid("max_frame_size", "must be at least 1 byte");
        }
        if ws.max_write_buffer_size <= ws.write_buffer_size {
            return invalid(
                "websocket_config",
                "max_write_buffer_size must be greater than write_buffer_size",
            );
        }
        Ok(())
    }
}

/// Configures and starts a [`Socket`].
///
/// Protocol settings are those of [`phx_proto::ConfigBuilder`]; the rest tune the queues and
/// the WebSocket. An invalid setting is reported by [`Builder::connect`].
#[must_use]
pub struct Builder<R> {
    config: Result<ConfigBuilder, ConfigError>,
    seeded: bool,
    options: Options,
    runtime: R,
}

impl<R: Runtime> Builder<R> {
    /// Starts configuring a socket for `endpoint` (such as `wss://example.com/socket`) on
    /// `runtime`.
    pub fn new(endpoint: &str, runtime: R) -> Self {
        Self {
            config: Config::builder(endpoint),
            seeded: false,
            options: Options {
                channel_capacity: DEFAULT_CHANNEL_CAPACITY,
                channel_capacity_bytes: DEFAULT_CHANNEL_BYTES,
                event_capacity: 1024,
                command_capacity: 1024,
                websocket: WebSocketConfig::default().read_buffer_size(DEFAULT_READ_BUFFER),
                credentials: None,
                close_timeout: Duration::from_secs(1),
                tls: TlsOptions::default(),
            },
            runtime,
        }
    }

    fn map(mut self, f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        self.config = self.config.map(f);
        self
    }

    /// Adds a connect param, sent in the URL query on every connect. Its value shows in logs and
    /// `Debug` output like any other: give a token or any other secret with
    /// [`Builder::secret_param`] instead.
    pub fn param(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.map(|c| c.param(key, value))
    }

    /// Adds a connect param whose value never appears in logs, `Debug` output or errors.
    pub fn secret_param(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.map(|c| c.secret_param(key, value))
    }

    /// Sends `token` in the `Sec-WebSocket-Protocol` header (Phoenix 1.8 `auth_token: true`).
    pub fn auth_token(self, token: impl Into<String>) -> Self {
        self.map(|c| c.auth_token(token))
    }

    /// Adds an HTTP header to the upgrade request.
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.map(|c| c.header(name, value))
    }

    /// Heartbeat interval (30 s); a missed heartbeat reply marks the connection dead.
    pub fn heartbeat(self, interval: Duration) -> Self {
        self.map(|c| c.heartbeat_interval(interval))
    }

    /// Default timeout of joins, pushes and leaves (10 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|c| c.timeout(timeout))
    }

    /// Longest time a connection attempt may take, credentials, dial and handshake included
    /// (10 s).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.map(|c| c.connect_timeout(timeout))
    }

    /// Reconnect schedule (phoenix.js's by default).
    pub fn reconnect(self, backoff: Backoff) -> Self {
        self.map(|c| c.reconnect(backoff))
    }

    /// Rejoin schedule (phoenix.js's by default).
    pub fn rejoin(self, backoff: Backoff) -> Self {
        self.map(|c| c.rejoin(backoff))
    }

    /// Stops reconnecting after this many failed attempts in a row.
    pub fn max_reconnect_attempts(self, attempts: u32) -> Self {
        self.map(|c| c.max_reconnect_attempts(attempts))
    }

    /// Whether to reconnect when the server closes with 1000 (on by default, as phoenix.js
    /// 1.8.16 does).
    pub fn reconnect_on_normal_close(self, reconnect: bool) -> Self {
        self.map(|c| c.reconnect_on_normal_close(reconnect))
    }

    /// The wire format ([`phx_proto::V2Json`] by default).
    pub fn serializer(self, serializer: impl Serializer + 'static) -> Self {
        self.map(|c| c.serializer(serializer))
    }

    /// Seed of the backoff jitter. Without one, a seed is drawn at start and logged, so a run
    /// can be replayed.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seeded = true;
        self.map(|c| c.rng_seed(seed))
    }

    /// Most pushes waiting for a connection or a join (1024); beyond it a push fails at once.
    pub fn send_buffer_capacity(self, capacity: usize) -> Self {
        self.map(|c| c.send_buffer_capacity(capacity))
    }

    /// Most pushes awaiting replies at once (65 536).
    pub fn max_pending_pushes(self, max: usize) -> Self {
        self.map(|c| c.max_pending_pushes(max))
    }

    /// Messages kept for a channel's reader (65,536 per stream, as async-nats keeps for a
    /// subscription). When a reader falls further behind, new messages are dropped and
    /// counted, and the stream yields [`crate::Lagged`]`(n)` where they were lost; the socket
    /// itself never waits for a reader. The count costs memory only while a reader is behind
    /// (about 200 bytes a message besides its payload), and an emptied stream gives a large
    /// queue back. Messages are handed to readers in batches of at most a quarter of this
    /// capacity (up to 4,096 frames read at a time), and the driver yields its thread whenever
    /// a stream it fed is half full, in case the reader waits for that thread. Zero is a
    /// [`ConfigError`].
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.options.channel_capacity = capacity;
        self
    }

    /// Payload bytes queued for a channel's reader (64 MiB per stream), on top of
    /// [`Builder::channel_capacity`]'s count: whichever is reached first drops new messages,
    /// with the same lag policy, so a server that sends large messages faster than they are
    /// read cannot make the client hold thousands of them. A stream with nothing queued always
    /// takes the next message, however large (up to [`Builder::max_message_size`]). As with
    /// the count, a stream holds up to twice this (what its reader took last, plus what queued
    /// since), and the driver hands over, and on a runtime that shares the reader's thread reads
    /// between yields, frames of at most a quarter of it. Zero is a [`ConfigError`].
    pub fn channel_capacity_bytes(mut self, bytes: usize) -> Self {
        self.options.channel_capacity_bytes = bytes;
        self
    }

    /// Items kept for each [`Socket::events`] reader and each presence change stream (1024),
    /// with the same lag policy. One presence diff can carry many changes. Zero is a
    /// [`ConfigError`].
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.options.event_capacity = capacity;
        self
    }

    /// WebSocket limits and buffer sizes, replacing phx's defaults (tungstenite's, with a
    /// [`Builder::read_buffer_size`] of 16 KiB). A configuration tungstenite would refuse (a
    /// `max_write_buffer_size` not above `write_buffer_size`) is a [`ConfigError`].
    pub fn websocket_config(mut self, config: WebSocketConfig) -> Self {
        self.options.websocket = config;
        self
    }

    /// Size of each connection's read buffer (16 KiB by default), allocated at its first read
    /// and kept while it is open, so it is most of an idle socket's memory. While reads keep
    /// filling it (a burst), it grows to 128 KiB, which saves system calls, and it goes back
    /// to this size once the connection is quiet; a size above 128 KiB never grows. A frame
    /// larger than this size is read into memory of its own, grown as its bytes arrive. Zero
    /// is a [`ConfigError`].
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.options.websocket = self.options.websocket.read_buffer_size(bytes);
        self
    }

    /// Largest message accepted from the server (64 MiB by default). A larger one drops the
    /// connection with [`phx_proto::CloseReason::MessageTooLarge`], and the socket reconnects.
    /// Zero is a [`ConfigError`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.websocket = self.options.websocket.max_message_size(Some(bytes));
        self
    }

    /// Largest single WebSocket frame accepted from the server (16 MiB by default). Zero is a
    /// [`ConfigError`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.options.websocket = self.options.websocket.max_frame_size(Some(bytes));
        self
    }

    /// Largest frame this client sends (10,000,000 bytes, Phoenix's default inbound limit);
    /// a larger push fails at once instead of making the server drop the connection.
    pub fn max_outgoing_frame_size(self, bytes: usize) -> Self {
        self.map(|c| c.max_frame_size(bytes))
    }

    /// Trusts the CA certificates of a PEM bundle for `wss://`, on top of the default roots.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.options.tls.add_pem(pem);
        self
    }

    /// Trusts a DER-encoded CA certificate for `wss://`.
    pub fn add_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.options.tls.roots.push(der.into());
        self
    }

    /// **Turns off TLS certificate verification.** Any server can then impersonate the
    /// endpoint; for tests against self-signed servers only. Logged as a warning.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.options.tls.accept_invalid_certs = accept;
        self
    }

    /// Uses the platform TLS library (native-tls) instead of rustls.
    #[cfg(feature = "native-tls")]
    pub fn use_native_tls(mut self) -> Self {
        self.options.tls.native_tls = true;
        self
    }

    /// Calls `credentials` before every connection attempt, so an expired token is never
    /// replayed on reconnect. Its params are treated as secrets.
    ///
    /// ```no_run
    /// # fn f<R: phx_client::Runtime>(b: phx_client::Builder<R>) -> phx_client::Builder<R> {
    /// b.credentials(|| async {
    ///     let token = String::from("fresh-token"); // e.g. fetched from an auth service
    ///     Ok::<_, std::io::Error>(phx_client::Credentials {
    ///         params: vec![("token".into(), token)],
    ///         auth_token: None,
    ///     })
    /// })
    /// # }
    /// ```
    pub fn credentials<F, Fut, E>(mut self, credentials: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credentials, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.options.credentials = Some(Arc::new(move || {
            let fut = credentials();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// As [`Builder::credentials`], with a synchronous callback returning the params.
    pub fn params_with<F>(self, params: F) -> Self
    where
        F: Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    {
        self.credentials(move || {
            let params = params();
            async move {
                Ok::<_, std::convert::Infallible>(Credentials {
                    params,
                    auth_token: None,
                })
            }
        })
    }

    /// As [`Builder::credentials`], with a synchronous callback returning the auth token.
    pub fn auth_token_with<F>(self, token: F) -> Self
    where
        F: Fn() -> String + Send + Sync + 'static,
    {
        self.credentials(move || {
            let auth_token = Some(token());
            async move {
                Ok::<_, std::convert::Infallible>(Credentials {
                    params: Vec::new(),
                    auth_token,
                })
            }
        })
    }

    fn build(self) -> Result<(Socket<R>, Driver<R>), ConnectError> {
        let mut builder = self.config?;
        let mut seed = None;
        if !self.seeded {
            let s = random_seed();
            seed = Some(s);
            builder = builder.rng_seed(s);
        }
        // Payloads are checked where messages are consumed (`Registry::messages`).
        let config = builder.defer_payload_checks(true).build()?;
        self.options.check()?;
        // Only `wss://` endpoints need a TLS connector (a rustls one holds the whole root
        // store): `ws://` sockets stay small.
        let tls = if config.redacted_url().starts_with("wss:") {
            self.options.tls.connector().map_err(ConnectError::Tls)?
        } else {
            self.options.tls.check().map_err(ConnectError::Tls)?;
            None
        };
        let seed = seed.unwrap_or(config.rng_seed());
        let (tx, rx) = mpsc::channel(self.options.command_capacity);
        let registry = Arc::new(Registry::default());
        let url = config.redacted_url();
        let (event_capacity, channel_capacity, channel_capacity_bytes) = (
            self.options.event_capacity,
            self.options.channel_capacity,
            self.options.channel_capacity_bytes,
        );
        let driver = Driver::new(
            self.runtime,
            tls,
            config,
            self.options,
            rx,
            registry.clone(),
            seed,
        );
        // A URL the core accepts but HTTP cannot carry is a configuration error now, not a
        // failed dial on every retry.
        driver.check_url()?;
        let shared = Arc::new(Shared {
            commands: Mutex::new(tx),
            direct: driver.direct(),
            registry,
            event_capacity,
            channel_capacity,
            channel_capacity_bytes,
            url,
        });
        let socket = Socket {
            shared,
            _runtime: PhantomData,
        };
        Ok((socket, driver))
    }

    /// Starts the socket and waits for its first connection.
    ///
    /// # Errors
    /// [`ConnectError`] if the configuration is invalid or the first attempt fails (refused,
    /// timed out, unreachable); the socket is then shut down. Use
    /// [`Builder::connect_lazy`] to keep retrying in the background instead.
    pub async fn connect(self) -> Result<Socket<R>, ConnectError> {
        let runtime = self.runtime.clone();
        if let Some(why) = runtime.cannot_spawn() {
            return Err(ConnectError::Runtime(why));
        }
        let (socket, mut driver) = self.build()?;
        let (tx, rx) = oneshot::channel();
        driver.connect_waiter(tx);
        runtime.spawn(driver);
        match rx.await {
            Ok(Ok(())) => Ok(socket),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Shutdown),
        }
    }

    /// Starts the socket and returns at once; it connects, and reconnects, in the background.
    /// Joins and pushes made meanwhile wait for the connection.
    ///
    /// # Errors
    /// [`ConnectError::Config`] for an invalid setting, [`ConnectError::Tls`] for invalid TLS
    /// settings, [`ConnectError::Runtime`] when the runtime cannot start the driver here.
    pub fn connect_lazy(self) -> Result<Socket<R>, ConnectError> {
        let runtime = self.runtime.clone();
        if let Some(why) = runtime.cannot_spawn() {
            return Err(ConnectError::Runtime(why));
        }
        let (socket, driver) = self.build()?;
        runtime.spawn(driver);
        Ok(socket)
    }

    /// Returns the socket and its driver without spawning it, for applications that run their
    /// own executor. The driver must be polled (spawned) for anything to happen; it connects
    /// as soon as it runs.
    ///
    /// # Errors
    /// As [`Builder::connect_lazy`].
    pub fn into_driver(self) -> Result<(Socket<R>, Driver<R>), ConnectError> {
        self.build()
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process; mix in the time for distinct sockets.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// State shared by every handle of one socket. The driver does not hold it (it would keep the
/// command channel open): it shares only the [`Registry`].
pub(crate) struct Shared {
    commands: Mutex<mpsc::Sender<Command>>,
    /// The shortcut into the driver when it is idle; weak, so that it does not keep the
    /// driver's state alive after the driver ends.
    pub(crate) direct: Weak<dyn Direct>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) event_capacity: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) channel_capacity_bytes: usize,
    pub(crate) url: String,
}

impl Shared {
    /// The command queue's shared sender.
    fn commands(&self) -> std::sync::MutexGuard<'_, mpsc::Sender<Command>> {
        // A sender has no state a panic could leave half-updated.
        self.commands.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Subscribers to socket events, shared by the handles (which add them) and the driver (which
/// feeds them); the version tells the driver to refresh its copy.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) events: Mutex<Vec<Weak<Inbox<Event>>>>,
    pub(crate) events_version: AtomicU64,
    /// The driver has stopped and closed the event streams; later ones are closed at birth.
    /// Written and read with `events` locked.
    pub(crate) events_closed: AtomicBool,
    /// Messages whose payload failed its check where they were consumed; the driver adds them
    /// to [`Stats::invalid_frames`].
    pub(crate) invalid_payloads: AtomicU64,
}

impl Registry {
    /// A stream of `source`'s messages whose payloads are checked as they are taken, on the
    /// consumer's task: the core leaves that check to us (`defer_payload_checks`), so the
    /// driver, which every frame of the socket passes through, does not pay for it. A message
    /// that fails is dropped, counted, logged and reported on the event streams as the core
    /// reports any frame that does not decode.
    fn messages(self: &Arc<Self>, source: Arc<dyn Source<Message>>) -> Messages {
        let registry = self.clone();
        Receiver::filtered(source, Arc::new(move |msg| registry.admit(msg)))
    }

    /// Checks `msg`'s payload if that was left to us: whether it may be handed out.
    pub(crate) fn admit(&self, msg: &mut Message) -> bool {
        let Err(error) = msg.payload.check() else {
            return true;
        };
        tracing::warn!(
            topic = %msg.topic,
            event = %msg.event,
            %error,
            "dropped a message whose payload is not valid JSON"
        );
        self.invalid_payloads.fetch_add(1, Ordering::Relaxed);
        let event = Event::Unexpected(Unexpected::InvalidFrame(error));
        inbox::offer(&self.event_subscribers(), &event, Waker::wake);
        false
    }

    /// A copy of the event streams' inboxes.
    pub(crate) fn event_subscribers(&self) -> Vec<Weak<Inbox<Event>>> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A Phoenix socket: one WebSocket, many channels. A cheap `Clone`; the connection is owned
/// by a driver task that stops (closing the WebSocket cleanly) when every handle, channels
/// included, is dropped.
pub struct Socket<R> {
    shared: Arc<Shared>,
    _runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Socket<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Socket<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> Socket<R> {
    /// Starts configuring a socket for `endpoint`, such as `wss://example.com/socket`.
    pub fn builder(endpoint: &str) -> Builder<R> {
        Builder::new(endpoint, R::default())
    }
}

impl<R> Socket<R> {
    async fn send(&self, command: Command) -> Result<(), SocketClosed> {
        self.send_holding(command, None).await.map(drop)
    }

    /// [`Socket::send`] for a push whose caller will wait for the reply, as the task of
    /// `holder` (see [`Direct::try_apply`]); the hold on the socket if it was given one.
    async fn send_holding(
        &self,
        command: Command,
        holder: Option<&Waker>,
    ) -> Result<Option<Held>, SocketClosed> {
        let mut command = match self.shared.direct.upgrade() {
            Some(direct) => match direct.try_apply(command, holder) {
                Ok(held) => return Ok(held),
                Err(command) => command,
            },
            None => command,
        };
        // The shared sender takes the command unless the queue is over its bound; only then
        // does this caller wait, on a sender of its own (cloning one per command would cost an
        // allocation and four atomic operations each time).
        let mut own = {
            let mut shared = self.shared.commands();
            match shared.try_send(command) {
                Ok(()) => return Ok(None),
                Err(e) if e.is_disconnected() => return Err(SocketClosed),
                Err(e) => {
                    command = e.into_inner();
                    shared.clone()
                }
            }
        };
        own.send(command).await.map_err(|_| SocketClosed)?;
        Ok(None)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SocketClosed> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| SocketClosed)
    }

    /// The endpoint URL, secrets redacted.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Prepares a channel for `topic`; [`ChannelBuilder::join`] joins it.
    pub fn channel(&self, topic: impl Into<String>) -> ChannelBuilder<R> {
        ChannelBuilder {
            socket: self.clone(),
            topic: topic.into(),
            params: Ok(Payload::empty()),
            timeout: None,
            presence: None,
        }
    }

    /// Socket and channel lifecycle events from now on: connects, disconnects with their
    /// reason and next retry, heartbeats with their RTT, joins and rejoins, errors, leaves,
    /// push timeouts and failures, and ignored input. Message traffic is not included (read it
    /// from [`Channel::messages`]).
    pub fn events(&self) -> Events {
        let inbox = Inbox::new(self.shared.event_capacity);
        let registry = &self.shared.registry;
        let mut subs = registry.events.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock the driver sets it under as it closes the streams it knows.
        if registry.events_closed.load(Ordering::Relaxed) {
            inbox.close();
        } else {
            subs.retain(|w| w.strong_count() > 0);
            subs.push(Arc::downgrade(&inbox));
            registry.events_version.fetch_add(1, Ordering::Release);
        }
        drop(subs);
        Receiver::new(inbox)
    }

    /// A snapshot of the socket's counters.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn stats(&self) -> Result<Stats, SocketClosed> {
        self.ask(Command::Stats).await
    }

    /// Leaves every channel, closes the WebSocket with 1000 and stops reconnecting; every
    /// pending join and push ends. [`Socket::connect`] starts again.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn disconnect(&self) -> Result<(), SocketClosed> {
        self.ask(Command::Disconnect).await
    }

    /// Connects again after [`Socket::disconnect`], or after the socket gave up; dials at once
    /// while waiting to reconnect.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn connect(&self) -> Result<(), SocketClosed> {
        self.send(Command::Connect).await
    }

    /// Sets a connect param for the next connection attempts.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn set_param(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), SocketClosed> {
        self.send(Command::SetParam {
            key: key.into(),
            value: value.into(),
            secret: false,
        })
        .await
    }

    /// Sets a secret connect param for the next connection attempts.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn set_secret_param(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), SocketClosed> {
        self.send(Command::SetParam {
            key: key.into(),
            value: value.into(),
            secret: true,
        })
        .await
    }

    /// Sets or clears the auth token for the next connection attempts.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn set_auth_token(&self, token: Option<String>) -> Result<(), SocketClosed> {
        self.send(Command::SetAuthToken(token)).await
    }

    /// Whether the driver has stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.commands().is_closed()
    }
}

/// A channel to be joined; from [`Socket::channel`].
#[must_use]
pub struct ChannelBuilder<R> {
    socket: Socket<R>,
    topic: String,
    params: Result<Payload, String>,
    timeout: Option<Duration>,
    presence: Option<PresenceEvents>,
}

impl<R> ChannelBuilder<R> {
    /// Join params, serialized once and sent with every (re)join.
    pub fn params(mut self, params: &impl Serialize) -> Self {
        self.params = Payload::json(params).map_err(|e| e.to_string());
        self
    }

    /// Join params as a ready payload (JSON or binary).
    pub fn payload(mut self, params: Payload) -> Self {
        self.params = Ok(params);
        self
    }

    /// Timeout of this channel's joins, and default timeout of its pushes. Zero makes the join
    /// fail with [`JoinError::Invalid`]`(`[`phx_proto::JoinError::ZeroTimeout`]`)`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Tracks Phoenix Presence on this channel (see [`Channel::presence`]). Its
    /// `presence_state` / `presence_diff` messages then feed the presence view instead of
    /// [`Channel::messages`].
    pub fn presence(self) -> Self {
        self.presence_events(PresenceEvents::default())
    }

    /// As [`ChannelBuilder::presence`], with the app's own event names.
    pub fn presence_events(mut self, events: PresenceEvents) -> Self {
        self.presence = Some(events);
        self
    }

    /// Joins the channel and waits for the server's answer. Messages are kept from the moment
    /// of the join, so nothing sent right after the reply is missed.
    ///
    /// Once joined, the channel rejoins by itself after errors and reconnects (watch
    /// [`Socket::events`] for `Joined { rejoin: true }` to refetch missed state).
    ///
    /// Dropping the returned future before it completes (a timeout around it, say) abandons
    /// the join: if the server accepts it anyway, the channel is left at once, so the topic is
    /// free for another join.
    ///
    /// # Errors
    /// [`JoinError::Rejected`] with the server's reply, [`JoinError::Timeout`],
    /// [`JoinError::Invalid`] (such as a topic already joined on this socket),
    /// [`JoinError::Closed`], [`JoinError::SocketClosed`].
    pub async fn join(self) -> Result<(Channel<R>, Reply), JoinError> {
        let params = self.params.map_err(JoinError::Serialize)?;
        let presence = self
            .presence
            .is_some()
            .then(|| Inbox::new(self.socket.shared.event_capacity));
        let shared = Arc::new(ChannelShared {
            topic: self.topic,
            inbox: Inbox::with_limits(
                self.socket.shared.channel_capacity,
                self.socket.shared.channel_capacity_bytes,
            ),
            inbox_taken: AtomicBool::new(false),
            presence,
            presence_taken: AtomicBool::new(false),
            version: AtomicU64::new(0),
            extra: Mutex::new(None),
        });
        let (tx, rx) = oneshot::channel();
        let mut options = JoinOptions::default();
        options.timeout = self.timeout;
        options.presence = self.presence;
        self.socket
            .send(Command::Join {
                params,
                options,
                shared: shared.clone(),
                reply: tx,
            })
            .await
            .map_err(|_| JoinError::SocketClosed)?;
        let answer = JoinAnswer {
            rx,
            socket: &self.socket,
        };
        let (id, reply) = answer.await.map_err(|_| JoinError::SocketClosed)??;
        let channel = Channel {
            inner: shared,
            id,
            socket: self.socket,
        };
        Ok((channel, reply))
    }
}

type JoinOutcome = Result<(ChannelId, Reply), JoinError>;

/// A join's answer, awaited. Dropped with the answer in but not taken (a `select!` or
/// timeout whose other branch won in the same wake-up), it leaves the channel nobody will
/// hold; an answer that comes after the drop is handed back to the driver, which leaves it.
struct JoinAnswer<'a, R> {
    rx: oneshot::Receiver<JoinOutcome>,
    socket: &'a Socket<R>,
}

impl<R> Future for JoinAnswer<'_, R> {
    type Output = Result<JoinOutcome, oneshot::Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx)
    }
}

impl<R> Drop for JoinAnswer<'_, R> {
    fn drop(&mut self) {
        if let Some(Ok((channel, _))) = self.rx.close_taking() {
            tracing::debug!(%channel, "join abandoned after its answer; leaving");
            let (reply, _) = oneshot::channel();
            // A sender of its own always has room in the queue: nothing here can wait.
            let _ = self
                .socket
                .shared
                .commands()
                .clone()
                .try_send(Command::Leave { channel, reply });
        }
    }
}

/// A channel subscriber: an event filter (`None`: every message) and its queue.
pub(crate) type Subscriber = (Option<String>, Weak<Inbox<Message>>);

/// Extra subscribers of a channel, registered from any handle and picked up by the driver.
#[derive(Default, Clone)]
pub(crate) struct ExtraSubs {
    pub(crate) messages: Vec<Subscriber>,
    pub(crate) presence: Vec<Weak<Inbox<PresenceChange>>>,
}

/// What a channel's handles and the driver share: one allocation per channel, holding the
/// channel's own message queue and the subscribers its handles add.
pub(crate) struct ChannelShared {
    pub(crate) topic: String,
    pub(crate) inbox: Inbox<Message>,
    inbox_taken: AtomicBool,
    pub(crate) presence: Option<Arc<Inbox<PresenceChange>>>,
    presence_taken: AtomicBool,
    /// Bumped whenever a handle adds a subscriber, so the driver reloads its copy.
    pub(crate) version: AtomicU64,
    /// Allocated on the first extra subscriber: most channels never have one.
    pub(crate) extra: Mutex<Option<Box<ExtraSubs>>>,
}

impl ChannelShared {
    /// A copy of the extra subscribers.
    pub(crate) fn extra(&self) -> ExtraSubs {
        self.extra
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .cloned()
            .unwrap_or_default()
    }

    /// Registers `inbox`, a further stream of this channel, through `add`. A channel that has
    /// ended (its main inbox is closed before the driver collects the extra streams to close
    /// them) closes it at once: whichever of the two comes second sees the other.
    fn add_extra<T>(&self, inbox: &Inbox<T>, add: impl FnOnce(&mut ExtraSubs)) {
        {
            let mut extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
            add(extra.get_or_insert_with(Box::default));
            self.version.fetch_add(1, Ordering::Release);
        }
        if self.inbox.is_closed() {
            inbox.close();
        }
    }
}

impl Source<Message> for ChannelShared {
    fn inbox(&self) -> &Inbox<Message> {
        &self.inbox
    }
}

/// A joined channel. A cheap `Clone`. Dropping it does not leave the channel: call
/// [`Channel::leave`].
pub struct Channel<R> {
    inner: Arc<ChannelShared>,
    id: ChannelId,
    socket: Socket<R>,
}

impl<R> Clone for Channel<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            id: self.id,
            socket: self.socket.clone(),
        }
    }
}

impl<R> fmt::Debug for Channel<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("topic", &self.inner.topic)
            .field("id", &self.id)
            .finish()
    }
}

impl<R> Channel<R> {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The core's id of this channel (as found in [`Socket::events`]).
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The socket this channel belongs to.
    pub fn socket(&self) -> &Socket<R> {
        &self.socket
    }

    /// The channel's messages (pushes and broadcasts from the server). The first call returns
    /// every message since the join; later calls return a new stream of the messages from then
    /// on. The stream ends when the channel ends.
    ///
    /// Each payload is checked to be well-formed JSON as the stream hands its message out, on
    /// the reading task rather than in the driver; a message that fails is not handed out but
    /// counted in [`Stats::invalid_frames`], logged and reported as
    /// [`Unexpected::InvalidFrame`] on [`Socket::events`].
    pub fn messages(&self) -> Messages {
        if !self.inner.inbox_taken.swap(true, Ordering::AcqRel) {
            return self.socket.shared.registry.messages(self.inner.clone());
        }
        self.subscribe(None)
    }

    /// The messages with event `event`, from now on. [`Channel::messages`] still sees them too.
    pub fn on(&self, event: impl Into<String>) -> Messages {
        self.subscribe(Some(event.into()))
    }

    fn subscribe(&self, event: Option<String>) -> Messages {
        let shared = &self.socket.shared;
        let inbox = Inbox::with_budget(shared.channel_capacity, shared.channel_capacity_bytes);
        self.inner.add_extra(&inbox, |extra| {
            extra.messages.retain(|(_, w)| w.strong_count() > 0);
            extra.messages.push((event, Arc::downgrade(&inbox)));
        });
        self.socket.shared.registry.messages(inbox)
    }

    /// The channel's presence view, when it was joined with [`ChannelBuilder::presence`].
    pub fn presence(&self) -> Option<PresenceView<R>> {
        self.inner.presence.as_ref().map(|_| PresenceView {
            channel: self.clone(),
        })
    }

    /// Pushes `event` with a payload serialized by serde, and waits for the reply.
    ///
    /// Dropping the future (a timeout around it, say) does not withdraw a push the socket has
    /// taken: it is still sent, and it counts toward `max_pending_pushes` until its reply or
    /// its own timeout. For a push nobody waits on, use [`Channel::cast`].
    ///
    /// # Errors
    /// [`PushError::Rejected`] (error or custom status reply), [`PushError::Timeout`],
    /// [`PushError::Failed`] (channel or connection gone), [`PushError::Refused`] (buffer
    /// full, channel leaving...), [`PushError::Serialize`], [`PushError::SocketClosed`].
    pub async fn push(&self, event: &str, payload: &impl Serialize) -> Result<Reply, PushError> {
        let payload = Payload::json(payload).map_err(|e| PushError::Serialize(e.to_string()))?;
        self.push_payload(event, payload, None).await
    }

    /// Pushes a ready payload (JSON or binary) with an optional timeout, and waits for the reply.
    ///
    /// # Errors
    /// As [`Channel::push`]; a zero timeout is [`PushError::Refused`]`(`
    /// [`phx_proto::PushError::ZeroTimeout`]`)`.
    pub async fn push_payload(
        &self,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Reply, PushError> {
        let (tx, rx) = oneshot::channel();
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let held = self
            .socket
            .send_holding(
                Command::Push {
                    channel: self.id,
                    event: event.to_owned(),
                    payload,
                    timeout,
                    reply: Some(tx),
                    accepted: None,
                },
                Some(&waker),
            )
            .await
            .map_err(|_| PushError::SocketClosed)?;
        OwnReply::new(rx, self.socket.shared.direct.clone(), held)
            .await
            .map_err(|_| PushError::SocketClosed)?
    }

    /// Pushes raw bytes in a V2 binary frame, and waits for the reply.
    ///
    /// # Errors
    /// As [`Channel::push`].
    pub async fn push_binary(
        &self,
        event: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<Reply, PushError> {
        self.push_payload(event, Payload::binary(bytes), None).await
    }

    /// Fire and forget: pushes without waiting for a reply. Returns once the push is sent or
    /// buffered (in order with the channel's other pushes); a reply to one of the socket's
    /// latest 64 casts is dropped quietly (one to an older cast is reported as
    /// `Unexpected::UnknownRef` on [`Socket::events`]). Nothing tracks it afterwards: no timer,
    /// no pending slot, no outcome event (see [`phx_proto::Socket::cast`]); a cast still
    /// buffered when the channel ends is dropped.
    ///
    /// # Errors
    /// [`PushError::Refused`], [`PushError::Serialize`], [`PushError::SocketClosed`].
    pub async fn cast(&self, event: &str, payload: &impl Serialize) -> Result<(), PushError> {
        let payload = Payload::json(payload).map_err(|e| PushError::Serialize(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.socket
            .send(Command::Push {
                channel: self.id,
                event: event.to_owned(),
                payload,
                timeout: None,
                reply: None,
                accepted: Some(tx),
            })
            .await
            .map_err(|_| PushError::SocketClosed)?;
        rx.await.map_err(|_| PushError::SocketClosed)?
    }

    /// Replaces the params sent with the next rejoins (for example the last message id seen,
    /// so the server can replay what was missed).
    ///
    /// # Errors
    /// [`JoinError::Invalid`] if the channel has ended or the params cannot be encoded,
    /// [`JoinError::Serialize`], [`JoinError::SocketClosed`].
    pub async fn set_params(&self, params: &impl Serialize) -> Result<(), JoinError> {
        let params = Payload::json(params).map_err(|e| JoinError::Serialize(e.to_string()))?;
        let id = self.id;
        self.socket
            .ask(|reply| Command::SetJoinParams {
                channel: id,
                params,
                reply,
            })
            .await
            .map_err(|_| JoinError::SocketClosed)?
            .map_err(JoinError::Invalid)
    }

    /// Leaves the channel: sends `phx_leave` and waits for the server's confirmation (or the
    /// timeout). Buffered pushes fail; the message stream ends.
    ///
    /// # Errors
    /// [`LeaveError::Refused`] if it is already leaving or has ended,
    /// [`LeaveError::SocketClosed`].
    pub async fn leave(&self) -> Result<(), LeaveError> {
        let id = self.id;
        self.socket
            .ask(|reply| Command::Leave { channel: id, reply })
            .await
            .map_err(|_| LeaveError::SocketClosed)?
    }
}

/// A channel's presence view (Phoenix Presence, synchronised as phoenix.js does); from
/// [`Channel::presence`].
pub struct PresenceView<R> {
    channel: Channel<R>,
}

impl<R> Clone for PresenceView<R> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
        }
    }
}

impl<R> fmt::Debug for PresenceView<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceView")
            .field("topic", &self.channel.inner.topic)
            .finish()
    }
}

impl<R> PresenceView<R> {
    /// Everyone present now, by key, with their metas.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn list(&self) -> Result<Vec<(String, PresenceEntry)>, SocketClosed> {
        let channel = self.channel.id;
        self.channel
            .socket
            .ask(|reply| Command::PresenceList { channel, reply })
            .await
    }

    /// As phoenix.js's `list(by)`: maps each key and its entry through `chooser`.
    ///
    /// # Errors
    /// [`SocketClosed`] if the driver has stopped.
    pub async fn list_by<T>(
        &self,
        mut chooser: impl FnMut(&str, &PresenceEntry) -> T,
    ) -> Result<Vec<T>, SocketClosed> {
        Ok(self
            .list()
            .await?
            .iter()
            .map(|(k, e)| chooser(k, e))
            .collect())
    }

    /// The changes (joins, leaves, syncs). The first call returns every change since the join;
    /// later calls return the changes from then on. Ends when the channel ends.
    pub fn changes(&self) -> Receiver<PresenceChange> {
        let inner = &self.channel.inner;
        if let Some(main) = &inner.presence
            && !inner.presence_taken.swap(true, Ordering::AcqRel)
        {
            return Receiver::new(main.clone());
        }
        let inbox = Inbox::new(self.channel.socket.shared.event_capacity);
        inner.add_extra(&inbox, |extra| {
            extra.presence.retain(|w| w.strong_count() > 0);
            extra.presence.push(Arc::downgrade(&inbox));
        });
        Receiver::new(inbox)
    }
}
