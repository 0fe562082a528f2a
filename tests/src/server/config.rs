//! Configuration of the server model.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::connect::ConnectInfo;

/// Settings of the server model; `Default` reproduces the recorded Phoenix 1.8.12 test server
/// (but for the idle timeout's close code: see [`ServerConfig::idle_close_code`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Request path of the WebSocket endpoint (mount path plus transport path). Other paths
    /// are refused with 404. Default `/socket/websocket`.
    pub path: String,
    /// Who may connect. Default: the `token` param or the auth token must equal `"secret"`.
    pub auth: ConnectAuth,
    /// Whether the socket has `auth_token: true`: a `base64url.bearer.phx.` entry in
    /// `Sec-WebSocket-Protocol` is decoded as the auth token and `phoenix` is selected. When
    /// false, the header is ignored and nothing is selected. Default true.
    pub auth_token: bool,
    /// Close a connection that received no data for this long (`None`: never). Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// Close code of the idle timeout: Cowboy sends 1000 (the default), Bandit 1002 (the
    /// recorded server ran on Bandit; PROTOCOL.md §6.5).
    pub idle_close_code: u16,
    /// Channels one connection may hold; the next join fails with `too many channels joined`.
    /// Default 100.
    pub max_channels_per_transport: usize,
    /// Largest frame accepted, in bytes; a larger one closes the connection with 1009.
    /// Default 10 000 000 (WebSockAdapter's default).
    pub max_frame_size: usize,
    /// Which Phoenix version's rule decides about a message's `join_ref`. Default 1.8.12.
    pub join_ref_rule: JoinRefRule,
    /// Whether `phx_error` carries `{"reason":"channel_crash"}` (1.8.10+, the default) or `{}`.
    pub channel_crash_reason: bool,
    /// Close code for a `disconnect` broadcast: 1001 from Phoenix 1.8.8 (the default).
    pub disconnect_close_code: u16,
    /// The socket id of each connection, the topic a `disconnect` broadcast goes to.
    pub socket_id: SocketIdMode,
    /// Keep every frame each connection sent, for [`Server::received`](super::Server::received).
    /// Default false.
    pub record_frames: bool,
    /// Largest `n` a `flood` request may ask for; a larger one crashes the channel.
    pub max_flood: u64,
    /// Unix time, in seconds, of the first instant the model sees; presence `online_at` values
    /// count from it.
    pub unix_time_at_start: u64,
    /// Which of a presence join's two messages goes out first. Default: the diff, as recorded.
    pub presence_order: PresenceOrder,
}

/// The order of the `presence_diff` announcing a join and the `presence_state` pushed to the
/// joiner. Phoenix sends them from different processes, so either may arrive first
/// (PROTOCOL.md §7.2); the recorded run had the diff first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceOrder {
    /// The diff, then the state (traces/presence.txt).
    #[default]
    DiffFirst,
    /// The state, then the diff (the joiner's own arrival is then in both).
    StateFirst,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            path: "/socket/websocket".to_owned(),
            auth: ConnectAuth::Secret("secret".to_owned()),
            auth_token: true,
            idle_timeout: Some(Duration::from_secs(60)),
            idle_close_code: 1000,
            max_channels_per_transport: 100,
            max_frame_size: 10_000_000,
            join_ref_rule: JoinRefRule::Phoenix1_8_12,
            channel_crash_reason: true,
            disconnect_close_code: 1001,
            socket_id: SocketIdMode::Shared("user_socket".to_owned()),
            record_frames: false,
            max_flood: 1_000_000,
            unix_time_at_start: 1_800_000_000,
            presence_order: PresenceOrder::DiffFirst,
        }
    }
}

/// The socket's `connect/3` decision.
#[derive(Clone)]
pub enum ConnectAuth {
    /// Accept every connection.
    AcceptAll,
    /// Accept when the `token` param or the auth token equals this secret (the recorded server,
    /// with `"secret"`).
    Secret(String),
    /// Accept when the function returns true. It must be pure to keep the model deterministic.
    Custom(Arc<dyn Fn(&ConnectInfo) -> bool + Send + Sync>),
}

impl fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AcceptAll => f.write_str("AcceptAll"),
            Self::Secret(_) => f.write_str("Secret(..)"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// How the server treats the `join_ref` of a non-join message for a channel it holds
/// (PROTOCOL.md §4.3.7). A message the rule rejects is dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinRefRule {
    /// Phoenix ≤ 1.8.2: every message is delivered, even with a stale join_ref; `phx_leave`
    /// only with the stored join_ref.
    Phoenix1_8_2,
    /// Phoenix 1.8.3 to 1.8.11: only messages carrying exactly the stored join_ref (null only
    /// when the channel was joined with null).
    Phoenix1_8_3,
    /// Phoenix 1.8.12: the stored join_ref or null.
    #[default]
    Phoenix1_8_12,
}

impl JoinRefRule {
    /// Whether a message with join_ref `sent` reaches a channel that stored `stored`.
    pub fn accepts(self, stored: Option<&str>, sent: Option<&str>, is_leave: bool) -> bool {
        match self {
            Self::Phoenix1_8_12 => sent.is_none() || sent == stored,
            Self::Phoenix1_8_3 => sent == stored,
            Self::Phoenix1_8_2 => !is_leave || sent == stored,
        }
    }
}

/// What `id/1` of the socket returns, which decides who a `disconnect` broadcast closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketIdMode {
    /// No socket id: `disconnect_me` does nothing.
    None,
    /// Every connection has this id, as in the recorded server (`"user_socket"`), so
    /// `disconnect_me` closes every connection.
    Shared(String),
    /// Each connection has its own id, so `disconnect_me` closes only the sender's connection.
    PerConnection,
}
