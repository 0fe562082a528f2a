//! Sans-IO core of the phx Phoenix Channels client.
//!
//! phx-proto never touches a socket, a clock, a thread or the OS random source. A [`Socket`]
//! takes bytes, "transport opened/closed" and the current time as inputs, and hands back orders
//! for the transport ([`Transmit`]), events for the application ([`Event`]) and the next
//! deadline. The async adapters (`phx-tokio`, `phx-async-std`) drive it over a real WebSocket;
//! tests, the simulation harness and the fuzzers drive the very same code without one.
//!
//! What lives here, once: the wire [`codec`] (V1 and V2 JSON, V2 binary), the join cache and
//! rejoin, ref tracking and reply matching, heartbeats, push timeouts, the reconnect and rejoin
//! backoff, and the bounded send buffer.
//!
//! # Driving contract
//!
//! After every input (a `handle_*` call or a command), drain [`Socket::poll_transmit`] and
//! [`Socket::poll_event`] until both return `None`, then wait for the earliest of
//! [`Socket::poll_timeout`], a transport event or a user command. See [`Socket`] for a full
//! example.
//!
//! # Choices that differ from phoenix.js
//!
//! See the crate's README ("Differences from phoenix.js"): first joins are not retried after an
//! error or timeout, pushes in flight fail at once when their connection or channel dies
//! instead of waiting for their timeout, `leave` waits for the server's reply, nothing stale is
//! ever flushed from a send buffer, and a duplicate join is an error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod backoff;
mod channel;
pub mod codec;
mod config;
mod error;
mod event;
mod id_map;
mod payload;
pub mod presence;
mod push;
mod socket;
mod stats;
mod timer;
mod transmit;

pub use backoff::{Backoff, Rng};
pub use channel::{ChannelId, ChannelState, ChannelView};
pub use codec::{
    DecodeError, EncodeError, Frame, Message, Outgoing, Serializer, ServerSerializer, V1Json,
    V2Json,
};
pub use config::{AUTH_TOKEN_PREFIX, Config, ConfigBuilder, ConfigError};
pub use error::{JoinError, LeaveError, PushError};
pub use event::{ChannelClosed, ChannelError, DisconnectReason, Event, PushFailure, Unexpected};
pub use id_map::{IdHasher, IdMap, IdTable};
pub use payload::{ByteStr, Payload, PayloadError, PayloadKind};
pub use presence::{Presence, PresenceChange, PresenceEntry, PresenceEvents};
pub use push::PushRef;
pub use socket::{JoinOptions, Socket, SocketState};
pub use stats::{ChannelCounts, Stats};
pub use transmit::{CloseReason, ConnectRequest, ConnectionId, Transmit};
