//! Socket configuration: the endpoint, connect parameters and token, timeouts, schedules and
//! limits, validated once by [`ConfigBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::codec::{Serializer, V2Json};
use crate::transmit::ConnectRequest;

/// Why a configuration was refused. Each variant names the setting and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint URL cannot be used.
    #[error("invalid endpoint {url:?}: {reason}")]
    Endpoint {
        /// The URL as given (with any query removed, since it may hold secrets).
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A parsed endpoint: `ws`/`wss` scheme, authority and path (ending in `/websocket`), and any
/// query the user wrote.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    secure: bool,
    authority: String,
    path: String,
    query: Option<String>,
}

impl Endpoint {
    /// Parses `ws://`, `wss://`, `http://` or `https://` URLs; `http(s)` maps to `ws(s)` and
    /// `/websocket` is appended to the path unless it is already there (Phoenix's transport path).
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        let shown = url.split(['?', '#']).next().unwrap_or_default().to_owned();
        let err = |reason| ConfigError::Endpoint {
            url: shown.clone(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("expected a URL such as wss://example.com/socket"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(err("the scheme must be ws, wss, http or https")),
        };
        if rest.contains('#') {
            return Err(err("a URL fragment (#...) has no meaning for a WebSocket"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, (!q.is_empty()).then(|| q.to_owned())),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if authority.is_empty() {
            return Err(err("the URL has no host"));
        }
        if authority.contains('@') {
            return Err(err(
                "credentials in the URL are not supported; use auth_token or a secret param",
            ));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err("the URL contains white space or control characters"));
        }
        if let Some((_, port)) = authority.rsplit_once(':')
            && !authority.ends_with(']')
            && (port.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(err("the port must be a number from 0 to 65535"));
        }
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.ends_with("/websocket") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/websocket")
        };
        Ok(Self {
            secure,
            authority: authority.to_owned(),
            path,
            query,
        })
    }

    fn base(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// A connect parameter, sent in the URL query.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Param {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) secret: bool,
}

/// An extra HTTP header for the WebSocket upgrade request.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) secret: bool,
}

/// Percent-encodes as JavaScript's `encodeURIComponent` (and so phoenix.js) does.
pub(crate) fn encode_uri_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            // Both indices are nibbles, below 16.
            #[allow(clippy::indexing_slicing)]
            {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

/// Standard base64 (`+` and `/`) without padding, which is what Phoenix's auth-token
/// subprotocol carries despite its `base64url.` prefix.
pub(crate) fn base64_unpadded(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            // A sextet is below 64.
            #[allow(clippy::indexing_slicing)]
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// The subprotocol prefix under which Phoenix 1.8 carries an auth token.
pub const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// Everything a [`crate::Socket`] needs to know, built and validated by [`ConfigBuilder`].
///
/// `Clone`, so one configuration can serve many sockets; secrets are redacted from `Debug`.
#[derive(Clone)]
pub struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) params: Vec<Param>,
    pub(crate) auth_token: Option<String>,
    pub(crate) headers: Vec<Header>,
    pub(crate) serializer: Arc<dyn Serializer>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) rejoin: Backoff,
    pub(crate) max_reconnect_attempts: Option<u32>,
    pub(crate) reconnect_on_normal_close: bool,
    pub(crate) rng_seed: u64,
    pub(crate) send_buffer_capacity: usize,
    pub(crate) max_pending_pushes: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) defer_payload_checks: bool,
}

impl Config {
    /// Starts a configuration for `endpoint`, such as `wss://example.com/socket`.
    ///
    /// `http://` and `https://` are accepted and mapped to `ws://` and `wss://`; `/websocket`
    /// is appended unless the path already ends with it.
    ///
    /// # Errors
    /// [`ConfigError::Endpoint`] for a URL that is not a usable WebSocket endpoint.
    pub fn builder(endpoint: &str) -> Result<ConfigBuilder, ConfigError> {
        Ok(ConfigBuilder {
            config: Self {
                endpoint: Endpoint::parse(endpoint)?,
                params: Vec::new(),
                auth_token: None,
                headers: Vec::new(),
                serializer: Arc::new(V2Json),
                heartbeat_interval: Some(Duration::from_secs(30)),
                timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                reconnect: Backoff::phoenix_reconnect(),
                rejoin: Backoff::phoenix_rejoin(),
                max_reconnect_attempts: None,
                reconnect_on_normal_close: true,
                rng_seed: 0,
                send_buffer_capacity: 1024,
                max_pending_pushes: 65_536,
                max_frame_size: 10_000_000,
                defer_payload_checks: false,
            },
        })
    }

    /// The connect request for the current endpoint, params and token.
    pub(crate) fn connect_request(&self) -> ConnectRequest {
        let mut url = self.endpoint.base();
        let mut shown = url.clone();
        let mut sep = '?';
        if let Some(q) = &self.endpoint.query {
            url.push('?');
            url.push_str(q);
            shown.push_str("?<query>");
            sep = '&';
        }
        for p in &self.params {
            for (out, redact) in [(&mut url, false), (&mut shown, p.secret)] {
                out.push(sep);
                encode_uri_component(&p.key, out);
                out.push('=');
                if redact {
                    out.push_str("<redacted>");
                } else {
                    encode_uri_component(&p.value, out);
                }
            }
            sep = '&';
        }
        for out in [&mut url, &mut shown] {
            out.push(sep);
            out.push_str("vsn=");
            encode_uri_component(self.serializer.vsn(), out);
        }
        let subprotocols = match &self.auth_token {
            Some(token) => vec![
                "phoenix".to_owned(),
                format!("{AUTH_TOKEN_PREFIX}{}", base64_unpadded(token.as_bytes())),
            ],
            None => Vec::new(),
        };
        ConnectRequest {
            url,
            redacted_url: shown,
            subprotocols,
            headers: self
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone(), h.secret))
                .collect(),
        }
    }

    /// Whether message payloads are left for the consumer to check
    /// ([`ConfigBuilder::defer_payload_checks`]).
    pub fn defers_payload_checks(&self) -> bool {
        self.defer_payload_checks
    }

    /// The serializer in use.
    pub fn serializer(&self) -> &dyn Serializer {
        &*self.serializer
    }

    /// Default timeout of joins, pushes and leaves.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Heartbeat interval, `None` when heartbeats are off.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// The reconnect schedule.
    pub fn reconnect(&self) -> &Backoff {
        &self.reconnect
    }

    /// The rejoin schedule.
    pub fn rejoin(&self) -> &Backoff {
        &self.rejoin
    }

    /// Capacity of the send buffer: pushes waiting for a connection or a join, over all channels.
    pub fn send_buffer_capacity(&self) -> usize {
        self.send_buffer_capacity
    }

    /// The seed of the jitter PRNG.
    pub fn rng_seed(&self) -> u64 {
        self.rng_seed
    }

    /// The URL the next connect would dial, with secret params redacted.
    pub fn redacted_url(&self) -> String {
        self.connect_request().redacted_url
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted_url())
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "headers",
                &self.headers.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .field("vsn", &self.serializer.vsn())
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect", &self.reconnect)
            .field("rejoin", &self.rejoin)
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("reconnect_on_normal_close", &self.reconnect_on_normal_close)
            .field("rng_seed", &self.rng_seed)
            .field("send_buffer_capacity", &self.send_buffer_capacity)
            .field("max_pending_pushes", &self.max_pending_pushes)
            .field("defer_payload_checks", &self.defer_payload_checks)
            .field("max_frame_size", &self.max_frame_size)
            .finish()
    }
}

/// Builds a [`Config`] with by-value setters; [`ConfigBuilder::build`] validates everything once.
///
/// ```
/// use phx_proto::{Backoff, Config};
/// use std::time::Duration;
/// let config = Config::builder("https://example.com/socket")?
///     .param("user_id", "42")
///     .secret_param("token", "s3cret")
///     .heartbeat_interval(Duration::from_secs(15))
///     .reconnect(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30)))
///     .rng_seed(7)
///     .build()?;
/// assert_eq!(
///     config.redacted_url(),
///     "wss://example.com/socket/websocket?user_id=42&token=<redacted>&vsn=2.0.0"
/// );
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), phx_proto::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Adds a connect parameter (sent in the URL query on every connect). Its value shows in logs
    /// and `Debug` output: give secrets with [`ConfigBuilder::secret_param`].
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.params.push(Param {
            key: key.into(),
            value: value.into(),
            secret: false,
        });
        self
    }

    /// Adds a connect parameter whose value never appears in logs, `Debug` output or errors.
    pub fn secret_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.params.push(Param {
            key: key.into(),
            value: value.into(),
            secret: true,
        });
        self
    }

    /// Sends `token` in the `Sec-WebSocket-Protocol` header, as phoenix.js's `authToken` does
    /// (Phoenix 1.8+, socket option `auth_token: true`). Never logged.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.config.auth_token = Some(token.into());
        self
    }

    /// Adds an HTTP header to the upgrade request. `Authorization`, `Cookie` and
    /// `Proxy-Authorization` values are treated as secrets.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let secret = ["authorization", "cookie", "proxy-authorization"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s));
        self.config.headers.push(Header {
            name,
            value: value.into(),
            secret,
        });
        self
    }

    /// Adds an HTTP header whose value is never logged.
    pub fn secret_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push(Header {
            name: name.into(),
            value: value.into(),
            secret: true,
        });
        self
    }

    /// The wire format; [`V2Json`] by default (the only one with binary frames).
    pub fn serializer(mut self, serializer: impl Serializer + 'static) -> Self {
        self.config.serializer = Arc::new(serializer);
        self
    }

    /// Interval between heartbeats (30 s by default). A heartbeat not answered by the next one
    /// is due marks the connection dead.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = Some(interval);
        self
    }

    /// Turns heartbeats off. The server then closes an idle connection after its own timeout
    /// (60 s by default), and a half-open connection goes unnoticed: use with care.
    pub fn no_heartbeat(mut self) -> Self {
        self.config.heartbeat_interval = None;
        self
    }

    /// Default timeout of joins, pushes and leaves (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Longest time a connection attempt may take, dialing and WebSocket handshake included (10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Reconnect schedule ([`Backoff::phoenix_reconnect`] by default). It starts over once a
    /// connection has stayed open 5 s.
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// Rejoin schedule of errored channels ([`Backoff::phoenix_rejoin`] by default).
    pub fn rejoin(mut self, backoff: Backoff) -> Self {
        self.config.rejoin = backoff;
        self
    }

    /// Gives up after this many consecutive failed connection attempts (unlimited by default).
    pub fn max_reconnect_attempts(mut self, attempts: u32) -> Self {
        self.config.max_reconnect_attempts = Some(attempts);
        self
    }

    /// Whether to reconnect when the server closes with code 1000 (on by default, as
    /// phoenix.js 1.8.16 does; 1.8.12 and older did not). A server closes with 1000 on
    /// shutdown (Bandit) and on idle timeout (Cowboy), where coming back is right. Off, the
    /// `Disconnected` event has no `reconnect_at` and the application decides.
    pub fn reconnect_on_normal_close(mut self, reconnect: bool) -> Self {
        self.config.reconnect_on_normal_close = reconnect;
        self
    }

    /// Seed of the PRNG behind backoff jitter. Same seed, same schedule.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.config.rng_seed = seed;
        self
    }

    /// Most pushes that may wait, over all channels, for a connection or a join (1024).
    /// A push beyond it fails at once with [`crate::PushError::BufferFull`].
    pub fn send_buffer_capacity(mut self, capacity: usize) -> Self {
        self.config.send_buffer_capacity = capacity;
        self
    }

    /// Most pushes that may await a reply at once, buffered ones included (65 536).
    pub fn max_pending_pushes(mut self, max: usize) -> Self {
        self.config.max_pending_pushes = max;
        self
    }

    /// Largest frame the client sends (10,000,000 bytes: the inbound limit of Phoenix's
    /// WebSocket stack, which closes the whole connection with 1009 past it). A larger join or
    /// push fails at once with [`crate::EncodeError::FrameTooLarge`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Leaves the JSON payload of each message for a channel unchecked when the frame is
    /// decoded (off by default). [`Event::Message`](crate::Event::Message) then carries a
    /// payload whose [`Payload::is_checked`](crate::Payload::is_checked) is false, and whoever
    /// consumes it must call [`Payload::check`](crate::Payload::check) first, which fails
    /// exactly when decoding would have. The envelope, replies and every payload the socket
    /// itself reads (errors, presence) are still checked on arrival.
    ///
    /// For drivers that hand messages to other threads: the check then runs where the message
    /// is consumed, in parallel across channels, instead of in the one place every frame of
    /// the socket passes through. With the V1 format, which has no cheap way to delimit a
    /// payload, it changes nothing.
    pub fn defer_payload_checks(mut self, defer: bool) -> Self {
        self.config.defer_payload_checks = defer;
        self
    }

    /// Validates the settings and returns the configuration.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first setting out of range.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = &self.config;
        let invalid = |setting, reason| Err(ConfigError::Invalid { setting, reason });
        if c.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            return invalid("heartbeat_interval", "must be positive");
        }
        if c.timeout.is_zero() {
            return invalid("timeout", "must be positive");
        }
        if c.connect_timeout.is_zero() {
            return invalid("connect_timeout", "must be positive");
        }
        if let Err(reason) = c.reconnect.validate() {
            return invalid("reconnect", reason);
        }
        if let Err(reason) = c.rejoin.validate() {
            return invalid("rejoin", reason);
        }
        if c.max_reconnect_attempts == Some(0) {
            return invalid("max_reconnect_attempts", "must be at least 1");
        }
        if c.send_buffer_capacity == 0 {
            return invalid("send_buffer_capacity", "must be at least 1");
        }
        if c.max_pending_pushes == 0 {
            return invalid("max_pending_pushes", "must be at least 1");
        }
        if c.max_frame_size < 64 {
            return invalid("max_frame_size", "must be at least 64 bytes");
        }
        if c.params.iter().any(|p| p.key.is_empty()) {
            return invalid("param", "keys must not be empty");
        }
        if c.params.iter().any(|p| p.key == "vsn") {
            return invalid("param", "vsn is set by the serializer");
        }
        if c.headers.iter().any(|h| {
            h.name.is_empty()
                || !h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        }) {
            return invalid("header", "names must be non-empty HTTP tokens");
        }
        // What an HTTP request can carry (RFC 9110 field-value): anything but control
        // characters other than tab. A value refused here would fail every connection attempt.
        if c.headers.iter().any(|h| {
            h.value
                .bytes()
                .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        }) {
            return invalid("header", "values must not contain control characters");
        }
        if c.serializer.vsn().is_empty() {
            return invalid("serializer", "vsn must not be empty");
        }
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::V1Json;

    fn url(endpoint: &str) -> Result<String, ConfigError> {
        Ok(Config::builder(endpoint)?.build()?.connect_request().url)
    }

    #[test]
    fn url_is_built_like_phoenix_js() {
        let c = Config::builder("wss://h/socket")
            .unwrap()
            .param("token", "t")
            .build()
            .unwrap();
        assert_eq!(
            c.connect_request().url,
            "wss://h/socket/websocket?token=t&vsn=2.0.0"
        );
    }

    #[test]
    fn http_schemes_map_to_ws_and_websocket_suffix_is_added_once() {
        assert_eq!(
            url("http://h:4000/socket").unwrap(),
            "ws://h:4000/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(
            url("https://h/socket/").unwrap(),
            "wss://h/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(
            url("ws://h/socket/websocket").unwrap(),
            "ws://h/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(url("ws://h").unwrap(), "ws://h/websocket?vsn=2.0.0");
        assert_eq!(
            url("ws://h/s?a=1").unwrap(),
            "ws://h/s/websocket?a=1&vsn=2.0.0"
        );
        assert_eq!(
            url("WSS://[::1]:9/s").unwrap(),
            "wss://[::1]:9/s/websocket?vsn=2.0.0"
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        for (u, needle) in [
            ("example.com/socket", "expected a URL"),
            ("ftp://h/socket", "scheme"),
            ("ws:///socket", "no host"),
            ("ws://u:p@h/socket", "credentials"),
            ("ws://h:99999/socket", "port"),
            ("ws://h:/socket", "port"),
            ("ws://h/so cket", "white space"),
            ("ws://h/socket#x", "fragment"),
        ] {
            let e = url(u).unwrap_err();
            assert!(e.to_string().contains(needle), "{u}: {e}");
        }
    }

    #[test]
    fn params_are_encoded_as_encode_uri_component() {
        let c = Config::builder("ws://h/s")
            .unwrap()
            .param("a b", "x&y=z/é~*")
            .build()
            .unwrap();
        assert_eq!(
            c.connect_request().url,
            "ws://h/s/websocket?a%20b=x%26y%3Dz%2F%C3%A9~*&vsn=2.0.0"
        );
    }

    #[test]
    fn vsn_follows_the_serializer() {
        let c = Config::builder("ws://h/s")
            .unwrap()
            .serializer(V1Json)
            .build()
            .unwrap();
        assert!(c.connect_request().url.ends_with("?vsn=1.0.0"));
    }

    #[test]
    fn auth_token_travels_as_subprotocol_in_unpadded_standard_base64() {
        let c = Config::builder("ws://h/s")
            .unwrap()
            .auth_token("1234")
            .build()
            .unwrap();
        assert_eq!(
            c.connect_request().subprotocols,
            ["phoenix", "base64url.bearer.phx.MTIzNA"]
        );
        // The recorded trace: token "secret".
        assert_eq!(base64_unpadded(b"secret"), "c2VjcmV0");
        assert_eq!(base64_unpadded(b"\xfb\xff"), "+/8");
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"abc"), "YWJj");
    }

    #[test]
    fn secrets_never_show_in_debug_or_redacted_url() {
        let c = Config::builder("ws://h/s")
            .unwrap()
            .secret_param("token", "hunter2")
            .auth_token("tok-abc")
            .header("Authorization", "Bearer zzz")
            .build()
            .unwrap();
        let dbg = format!("{c:?}");
        for secret in ["hunter2", "tok-abc", "zzz"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        let req = c.connect_request();
        assert!(req.url.contains("hunter2"));
        let req_dbg = format!("{req:?}");
        for secret in ["hunter2", "dG9rLWFiYw", "zzz"] {
            assert!(!req_dbg.contains(secret), "{req_dbg}");
        }
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let b = || Config::builder("ws://h/s").unwrap();
        let cases = [
            (b().timeout(Duration::ZERO).build(), "timeout"),
            (
                b().heartbeat_interval(Duration::ZERO).build(),
                "heartbeat_interval",
            ),
            (b().send_buffer_capacity(0).build(), "send_buffer_capacity"),
            (
                b().max_reconnect_attempts(0).build(),
                "max_reconnect_attempts",
            ),
            (b().param("", "x").build(), "param"),
            (b().param("vsn", "3").build(), "param"),
            (b().header("Bad Name", "x").build(), "header"),
            (b().header("X", "a\r\nb").build(), "header"),
            (b().header("X", "a\u{1}b").build(), "header"),
            (b().header("X", "a\u{7f}").build(), "header"),
            (
                b().reconnect(Backoff::exponential(Duration::ZERO, Duration::ZERO))
                    .build(),
                "reconnect",
            ),
        ];
        for (result, setting) in cases {
            match result {
                Err(ConfigError::Invalid { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
    }
}
