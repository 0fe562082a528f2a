//! Errors returned by the async API.

use phx_proto::{CloseReason, ConfigError, DisconnectReason, EncodeError, PushFailure};

use crate::Reply;

/// Why the first connection could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server refused the WebSocket upgrade with this HTTP status (Phoenix answers 403
    /// when `connect/3` refuses the params or token).
    #[error("the server refused the connection with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// TLS failed: the server's certificate is not trusted, the handshake failed, or the TLS
    /// settings are invalid.
    #[error("TLS: {0}")]
    Tls(String),
    /// The handshake did not complete within the connect timeout.
    #[error("the connection attempt timed out")]
    Timeout,
    /// The connection closed right away.
    #[error("the server closed the connection with {code}")]
    Closed {
        /// Close code.
        code: u16,
    },
    /// Dialing or the handshake failed.
    #[error("could not connect: {0}")]
    Transport(String),
    /// The credentials callback failed.
    #[error("could not get credentials: {0}")]
    Credentials(String),
    /// The socket was shut down before it connected.
    #[error("the socket was shut down")]
    Shutdown,
    /// The runtime cannot run the socket's driver from here (for phx-tokio: no tokio runtime
    /// is running on this thread).
    #[error("cannot start the socket: {0}")]
    Runtime(&'static str),
}

impl ConnectError {
    pub(crate) fn from_disconnect(reason: &DisconnectReason) -> Self {
        match reason {
            DisconnectReason::Transport(CloseReason::Refused { status }) => {
                Self::Refused { status: *status }
            }
            DisconnectReason::Transport(CloseReason::Closed { code, .. }) => {
                Self::Closed { code: *code }
            }
            DisconnectReason::Transport(CloseReason::Error(e)) => Self::Transport(e.clone()),
            DisconnectReason::Transport(CloseReason::Tls(e)) => Self::Tls(e.clone()),
            DisconnectReason::ConnectTimeout => Self::Timeout,
            _ => Self::Transport(format!("{reason:?}")),
        }
    }
}

/// Why a join failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The server refused the join; the reply says why (such as `{"reason":"unauthorized"}`).
    #[error("join refused ({}): {}", .0.status, .0.response_text())]
    Rejected(Reply),
    /// The server did not answer within the join timeout.
    #[error("join timed out")]
    Timeout,
    /// The channel was left, closed or the socket disconnected before the join completed.
    #[error("the channel closed before the join completed")]
    Closed,
    /// The core refused the join (topic already joined on this socket, invalid topic,
    /// params that cannot be encoded).
    #[error(transparent)]
    Invalid(#[from] phx_proto::JoinError),
    /// The join params could not be serialized.
    #[error("join params: {0}")]
    Serialize(String),
    /// The socket's driver has stopped.
    #[error("the socket is closed")]
    SocketClosed,
}

/// Why a push did not get an `ok` reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The server replied with a status other than `ok`: usually `error`, or a custom one a
    /// channel chose (`{:reply, {:custom, payload}, socket}`); `status` tells which.
    #[error("push rejected ({}): {}", .0.status, .0.response_text())]
    Rejected(Reply),
    /// No reply within the push timeout (counted from the push, and again from the moment it
    /// left the send buffer if it waited there).
    #[error("push timed out")]
    Timeout,
    /// The push can never be answered: its channel or connection went away.
    #[error("push failed: {0:?}")]
    Failed(PushFailure),
    /// The core refused the push at once: send buffer full, too many pending, channel gone
    /// or leaving, reserved event, or a payload that cannot be encoded.
    #[error(transparent)]
    Refused(#[from] phx_proto::PushError),
    /// The payload could not be serialized.
    #[error("push payload: {0}")]
    Serialize(String),
    /// The socket's driver has stopped.
    #[error("the socket is closed")]
    SocketClosed,
}

impl PushError {
    /// Whether the failure says nothing about whether the server processed the push
    /// (timeout, or the connection dropped while it was in flight).
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Failed(PushFailure::ConnectionLost | PushFailure::ChannelErrored)
        )
    }
}

/// Why a leave failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveError {
    /// The core refused (already leaving, or the channel already ended).
    #[error(transparent)]
    Refused(#[from] phx_proto::LeaveError),
    /// The socket's driver has stopped.
    #[error("the socket is closed")]
    SocketClosed,
}

/// The socket's driver has stopped (every handle was dropped, or it was shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the socket is closed")]
pub struct SocketClosed;

impl From<EncodeError> for PushError {
    fn from(e: EncodeError) -> Self {
        Self::Refused(phx_proto::PushError::Encode(e))
    }
}
