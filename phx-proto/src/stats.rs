//! Counters and gauges of a socket, from [`crate::Socket::stats`].

use std::time::Duration;

/// A snapshot of a socket's counters (since creation) and gauges (now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames received on open connections.
    pub frames_in: u64,
    /// Frames handed to the transport.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes handed to the transport.
    pub bytes_out: u64,
    /// Connection attempts started.
    pub connect_attempts: u64,
    /// Attempts started by the reconnect timer (not by `connect`).
    pub reconnects: u64,
    /// Connections that opened.
    pub connects: u64,
    /// Round-trip time of the last answered heartbeat.
    pub last_rtt: Option<Duration>,
    /// Connections declared dead for a missed heartbeat.
    pub heartbeat_timeouts: u64,
    /// Messages delivered to channels.
    pub messages: u64,
    /// Pushes that timed out.
    pub push_timeouts: u64,
    /// Frames that failed to decode. With deferred payload checks, a message whose payload
    /// fails its check counts here once its consumer has checked it (phx-client adds those),
    /// and in `messages` too.
    pub invalid_frames: u64,
    /// Messages for topics with no channel.
    pub unknown_topics: u64,
    /// Replies matching no pending push (late, or garbage).
    pub unknown_refs: u64,
    /// Messages dropped for carrying an old join_ref.
    pub stale: u64,
    /// Messages dropped because their channel was not joined.
    pub not_joined: u64,
    /// Presence messages that could not be applied.
    pub invalid_presence: u64,
    /// Pushes awaiting a reply, buffered ones included.
    pub pushes_pending: usize,
    /// Pushes waiting in the send buffer.
    pub pushes_buffered: usize,
    /// Channels by state.
    pub channels: ChannelCounts,
}

/// Number of live channels in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelCounts {
    /// Joining.
    pub joining: usize,
    /// Joined.
    pub joined: usize,
    /// Errored, waiting to rejoin.
    pub errored: usize,
    /// Leaving.
    pub leaving: usize,
}
