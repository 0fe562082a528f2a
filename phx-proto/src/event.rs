//! What the core tells the application. Drain them with [`crate::Socket::poll_event`].

use std::time::{Duration, Instant};

use crate::channel::ChannelId;
use crate::codec::{DecodeError, EncodeError, Message};
use crate::payload::{ByteStr, Payload};
use crate::presence::{PresenceChange, PresenceError};
use crate::push::PushRef;
use crate::transmit::{CloseReason, ConnectionId};

/// Something that happened, for the application and for telemetry.
///
/// A channel's life ends with exactly one of: [`Event::JoinFailed`] or [`Event::JoinTimedOut`]
/// with `retry_at: None`, [`Event::Left`], or [`Event::ChannelClosed`]; after it, the
/// [`ChannelId`] is dead. A push's life ends with exactly one of [`Event::Replied`],
/// [`Event::PushTimedOut`] or [`Event::PushFailed`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection attempt started (attempt 1 is the first after a connect or a success).
    Connecting {
        /// The attempt's id.
        conn: ConnectionId,
        /// Consecutive attempt number.
        attempt: u32,
    },
    /// The WebSocket is open; channels are rejoining.
    Connected {
        /// The connection.
        conn: ConnectionId,
    },
    /// The connection ended or an attempt failed.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// When the next attempt starts; `None` when the socket will not reconnect by itself.
        reconnect_at: Option<Instant>,
        /// The wait before that attempt.
        reconnect_delay: Option<Duration>,
    },
    /// The socket stopped reconnecting after `attempts` consecutive failures
    /// ([`crate::ConfigBuilder::max_reconnect_attempts`]). Call `connect` to try again.
    ReconnectGaveUp {
        /// Failed attempts in a row.
        attempts: u32,
    },
    /// A heartbeat was answered.
    Heartbeat {
        /// Round-trip time from send to reply.
        rtt: Duration,
    },
    /// The channel joined (`rejoin: false`) or joined again after an error or a reconnect
    /// (`rejoin: true`): state missed while away should be fetched again.
    Joined {
        /// The channel.
        channel: ChannelId,
        /// The server's join response.
        response: Payload,
        /// Whether the channel had been joined before.
        rejoin: bool,
    },
    /// The server refused a join. The first join of a channel is not retried (`retry_at: None`,
    /// the channel is closed); a refused rejoin is retried at `retry_at`.
    JoinFailed {
        /// The channel.
        channel: ChannelId,
        /// The reply status (`error`, or a custom one).
        status: ByteStr,
        /// The server's response, such as `{"reason":"unauthorized"}`.
        response: Payload,
        /// When the rejoin is attempted, if it is.
        retry_at: Option<Instant>,
    },
    /// A join got no reply in time. As for [`Event::JoinFailed`], only rejoins are retried.
    JoinTimedOut {
        /// The channel.
        channel: ChannelId,
        /// When the rejoin is attempted, if it is.
        retry_at: Option<Instant>,
    },
    /// A joined channel broke: the server channel crashed (`phx_error`) or the connection was
    /// lost. It rejoins by itself.
    ChannelErrored {
        /// The channel.
        channel: ChannelId,
        /// What broke.
        reason: ChannelError,
        /// When the rejoin is scheduled; `None` means "when the socket is open again".
        retry_at: Option<Instant>,
    },
    /// The channel was left at the user's request.
    Left {
        /// The channel.
        channel: ChannelId,
        /// Whether the server confirmed the leave (otherwise it completed locally: the
        /// connection was down, or the reply timed out).
        confirmed: bool,
    },
    /// The channel ended for another reason than a leave.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: ChannelClosed,
    },
    /// A message for a joined channel (a push or broadcast from the server).
    Message {
        /// The channel.
        channel: ChannelId,
        /// The message; `event` and `payload` are what applications read.
        message: Message,
    },
    /// A push got its reply.
    Replied {
        /// The channel.
        channel: ChannelId,
        /// The push.
        push_ref: PushRef,
        /// The reply status: `ok`, `error`, or a custom one.
        status: ByteStr,
        /// The reply's response.
        response: Payload,
    },
    /// A push got no reply within its timeout (counted from the push call, and again from the
    /// moment it left the send buffer if it waited there).
    PushTimedOut {
        /// The channel.
        channel: ChannelId,
        /// The push.
        push_ref: PushRef,
    },
    /// A push can never be answered.
    PushFailed {
        /// The channel.
        channel: ChannelId,
        /// The push.
        push_ref: PushRef,
        /// Why.
        reason: PushFailure,
    },
    /// The presence view of a channel joined with presence tracking changed.
    Presence {
        /// The channel.
        channel: ChannelId,
        /// What changed.
        change: PresenceChange,
    },
    /// Input the core ignored: malformed frames, unknown topics or refs, stale messages. The
    /// socket carries on; each one is also counted in [`crate::Stats`].
    Unexpected(Unexpected),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport reported it (server close, refused handshake, IO error).
    Transport(CloseReason),
    /// A heartbeat was not answered in time; the core closed the connection.
    HeartbeatTimeout,
    /// The connection attempt took longer than the connect timeout.
    ConnectTimeout,
    /// [`crate::Socket::disconnect`] was called.
    Client,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(reason) => reason.fmt(f),
            Self::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            Self::ConnectTimeout => f.write_str("connect timeout"),
            Self::Client => f.write_str("disconnected by the client"),
        }
    }
}

/// What broke a joined channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The server channel crashed (`phx_error`), with the server's payload.
    Server(Payload),
    /// The connection was lost.
    ConnectionLost,
}

/// Why a channel ended without a leave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelClosed {
    /// The server closed it (`phx_close`): the channel stopped itself.
    Server,
    /// [`crate::Socket::disconnect`] was called.
    Disconnected,
}

/// Why a push can never be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushFailure {
    /// The channel was closed by the server, or left.
    ChannelClosed,
    /// The server channel crashed after the push was sent.
    ChannelErrored,
    /// The connection dropped after the push was sent; it may or may not have been processed.
    ConnectionLost,
    /// The socket was disconnected, or gave up reconnecting, while the push waited.
    Disconnected,
    /// The join failed, so buffered pushes cannot be sent.
    JoinFailed,
    /// The push could not be encoded when it was time to send it.
    Encode(EncodeError),
}

/// Input the core ignored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Unexpected {
    /// A frame that does not decode.
    InvalidFrame(DecodeError),
    /// A message for a topic with no channel.
    UnknownTopic {
        /// The topic.
        topic: ByteStr,
        /// The event.
        event: ByteStr,
    },
    /// A reply whose ref matches no pending push: a late reply to a timed-out push, or garbage.
    UnknownRef {
        /// The topic.
        topic: ByteStr,
        /// The ref, if any.
        ref_: Option<ByteStr>,
    },
    /// A message for an older instance of the channel (its join_ref is not the current one),
    /// for a channel being left, or a `phx_error` for a channel already errored.
    Stale {
        /// The channel.
        channel: ChannelId,
        /// The event.
        event: ByteStr,
    },
    /// A presence message that could not be applied (the view is unchanged), or held diffs
    /// that overflowed.
    Presence {
        /// The channel.
        channel: ChannelId,
        /// What was wrong.
        error: PresenceError,
    },
    /// A message for a channel that is not joined (yet); it is never delivered before the join
    /// reply.
    NotJoined {
        /// The channel.
        channel: ChannelId,
        /// The event.
        event: ByteStr,
    },
}
