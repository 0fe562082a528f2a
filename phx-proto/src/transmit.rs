//! What the driver must do to the transport: dial, write a frame, close.

use std::fmt;

use crate::codec::Frame;

/// Names one connection attempt. The core stamps every [`Transmit::Connect`] with a fresh id and
/// ignores transport inputs that carry an older one, so a late callback from a dead connection
/// cannot disturb the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    /// The attempt's number, counting from 1.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Everything needed to open the WebSocket: URL (endpoint, params and `vsn`), the subprotocols
/// to offer, and extra headers. `Debug` redacts secrets; use [`ConnectRequest::redacted_url`]
/// in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub(crate) url: String,
    pub(crate) redacted_url: String,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) headers: Vec<(String, String, bool)>,
}

impl ConnectRequest {
    /// The URL to dial, secrets included: never log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with secret params replaced by `<redacted>`, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// Subprotocols to offer in `Sec-WebSocket-Protocol`, in order (empty: send no header).
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// Extra headers for the upgrade request, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v, _)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocols: Vec<&str> = self
            .subprotocols
            .iter()
            .map(|p| {
                if p.starts_with(crate::config::AUTH_TOKEN_PREFIX) {
                    "base64url.bearer.phx.<redacted>"
                } else {
                    p.as_str()
                }
            })
            .collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v, secret)| (n.as_str(), if *secret { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("ConnectRequest")
            .field("url", &self.redacted_url)
            .field("subprotocols", &protocols)
            .field("headers", &headers)
            .finish()
    }
}

/// An order to the driver about the transport. Drain them with [`crate::Socket::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Transmit {
    /// Open a WebSocket. Report the outcome with [`crate::Socket::handle_connected`] or
    /// [`crate::Socket::handle_closed`], passing `conn`. Drop any previous connection first.
    Connect {
        /// This attempt's id.
        conn: ConnectionId,
        /// What to dial.
        request: ConnectRequest,
    },
    /// Write a frame on the open connection.
    Frame(Frame),
    /// Send a close frame (if the connection is open) and drop the connection, or abandon the
    /// attempt if it is still dialing. The core already treats it as closed: do not report
    /// [`crate::Socket::handle_closed`] for it (a report is ignored).
    Close {
        /// The connection to close.
        conn: ConnectionId,
        /// Close code to send.
        code: u16,
        /// Close reason to send.
        reason: &'static str,
    },
}

/// How a connection ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server sent a close frame.
    Closed {
        /// The close code (1005 when the frame had none).
        code: u16,
        /// The close reason text.
        reason: String,
    },
    /// The server answered the upgrade request with this HTTP status instead of 101
    /// (Phoenix answers 403 when `connect/3` refuses).
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The TLS handshake or session failed (for example an untrusted certificate).
    Tls(String),
    /// The server sent a message larger than the configured limit; the connection was dropped.
    MessageTooLarge {
        /// Size of the message (or frame), in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Dialing failed, an IO error happened, or the stream ended without a close frame.
    Error(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { code, reason } if reason.is_empty() => write!(f, "closed with {code}"),
            Self::Closed { code, reason } => write!(f, "closed with {code} ({reason})"),
            Self::Refused { status } => write!(f, "refused with HTTP {status}"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the {max}-byte limit")
            }
            Self::Error(e) => write!(f, "transport error: {e}"),
        }
    }
}
