//! Errors of the user commands. A command that fails changes nothing.

use crate::channel::ChannelId;
use crate::codec::EncodeError;
use crate::payload::ByteStr;

/// Why [`crate::Socket::join`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A channel for this topic is already joined, joining or rejoining. Leave it first; a
    /// topic has at most one live channel on a socket (Phoenix would close the older one).
    #[error("topic {topic:?} already has a live channel ({channel})")]
    AlreadyJoined {
        /// The topic.
        topic: ByteStr,
        /// The live channel.
        channel: ChannelId,
    },
    /// The topic is empty, or is `phoenix` (reserved for heartbeats).
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The join message cannot be encoded (binary params over V1, a field over 255 bytes).
    #[error("cannot encode the join: {0}")]
    Encode(#[from] EncodeError),
    /// The channel id is stale: the channel was left or closed.
    #[error("no such channel ({0})")]
    UnknownChannel(ChannelId),
    /// The join's timeout is zero: it would run out before the server could answer.
    #[error("the join timeout must not be zero")]
    ZeroTimeout,
}

/// Why [`crate::Socket::push`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The channel id is stale: the channel was left or closed.
    #[error("no such channel ({0})")]
    UnknownChannel(ChannelId),
    /// The channel is leaving.
    #[error("channel {0} is leaving")]
    Leaving(ChannelId),
    /// The send buffer is full: too many pushes are already waiting for a connection or a join.
    #[error("send buffer full ({limit} pushes waiting)")]
    BufferFull {
        /// The configured capacity.
        limit: usize,
    },
    /// Too many pushes await replies.
    #[error("too many pushes awaiting replies (limit {limit})")]
    TooManyPending {
        /// The configured limit.
        limit: usize,
    },
    /// `phx_join` and `phx_leave` are sent by join and leave, never as pushes.
    #[error("event {0:?} is reserved; use join/leave")]
    ReservedEvent(String),
    /// The message cannot be encoded (binary payload over V1, a field over 255 bytes).
    #[error("cannot encode the push: {0}")]
    Encode(#[from] EncodeError),
    /// The push's timeout is zero: it would run out before the server could answer.
    #[error("the push timeout must not be zero")]
    ZeroTimeout,
}

/// Why [`crate::Socket::leave`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveError {
    /// The channel id is stale: the channel was already left or closed.
    #[error("no such channel ({0})")]
    UnknownChannel(ChannelId),
    /// A leave is already in progress.
    #[error("channel {0} is already leaving")]
    AlreadyLeaving(ChannelId),
}
