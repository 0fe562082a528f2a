//! The runtime-neutral async Phoenix Channels client behind `phx-tokio` and `phx-async-std`.
//!
//! Applications use one of those crates; this one holds what they share, written once: the
//! handles ([`Socket`], [`Channel`]), the command queue, the bounded message queues and the
//! driver loop, TLS and the WebSocket (phx's frame reader, tungstenite's writer). An adapter only
//! implements [`Runtime`] (clock, timers, spawning and opening TCP connections). Every protocol
//! rule lives in [`phx_proto`].
//!
//! # Queues and slow consumers
//!
//! The driver never waits for the application: a blocked driver would miss heartbeats. Each
//! message and event stream is bounded ([`Builder::channel_capacity`], a message stream also by
//! [`Builder::channel_capacity_bytes`], [`Builder::event_capacity`]); when a reader falls
//! behind, new items are dropped, counted, and reported in place as [`Lagged`]`(n)`, so
//! `received + lagged == sent` always holds.
//! Callers of `join`, `push` and friends wait when the command queue is full or the
//! WebSocket cannot take more frames (backpressure on producers).
//!
//! When the runtime runs the driver on the application's thread ([`Runtime::shares_thread`],
//! tokio's current-thread runtime), the driver reads at most a quarter of
//! [`Builder::channel_capacity`] (at least one frame, at most 1,024), and frames of at most a
//! quarter of [`Builder::channel_capacity_bytes`], before yielding, so a reader that keeps reading a
//! channel's messages never lags. On any runtime, the driver also yields as soon as a message
//! stream it fed is half full (in count or in bytes): a reader in a task on a tokio multi-thread runtime may
//! be waiting for the very worker the driver runs on (tokio runs a task woken from a worker on
//! that worker, after the task that woke it). Presence changes and socket events are queued up to
//! [`Builder::event_capacity`]; one presence diff can carry many changes.
//!
//! # Pushes from the caller's task
//!
//! While no push awaits its reply and the driver is idle, a command made from the driver's own
//! executor ([`Runtime::context`]) is carried out on the caller's task, its frame written from
//! there, instead of waking the driver's task for it: a lone request/reply exchange saves a
//! thread hop. Pipelined pushes, and handles used from other executors, go through the command
//! queue. Timeouts that are due are left to the driver, which reads waiting frames before it
//! fires them, so a reply already received beats its deadline.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod burst;
mod driver;
mod error;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod inbox;
mod oneshot;
mod reader;
mod route;
mod runtime;
mod socket;
#[cfg(test)]
mod test_wake;
mod tls;
mod transport;
mod websocket;

pub use driver::Driver;
pub use error::{ConnectError, JoinError, LeaveError, PushError, SocketClosed};
pub use inbox::{Lagged, Receiver};
pub use runtime::Runtime;
pub use socket::{
    Builder, Channel, ChannelBuilder, Credentials, Events, Messages, PresenceView, Reply, Socket,
};
#[cfg(feature = "native-tls")]
pub use tls::NativeTls;
pub use tls::TlsConnector;

pub use phx_proto as proto;
pub use phx_proto::{
    Backoff, ChannelId, CloseReason, DisconnectReason, Event, Message, Payload, PayloadError,
    PresenceChange, PresenceEntry, PresenceEvents, PushFailure, Stats,
};
pub use tungstenite::protocol::WebSocketConfig;

/// Declares an adapter's public API once for every runtime: the shared re-exports and the
/// handle aliases (`Socket`, `Channel`, `Builder`, `ChannelBuilder`, `PresenceView`, `Driver`)
/// for the adapter's runtime type `$rt`. `phx-tokio` and `phx-async-std` both expand it, so their
/// APIs cannot drift apart.
#[macro_export]
macro_rules! adapter_api {
    ($rt:ty, $name:literal) => {
        pub use $crate::proto;
        pub use $crate::{
            Backoff, ChannelId, CloseReason, ConnectError, Credentials, DisconnectReason, Event,
            Events, JoinError, Lagged, LeaveError, Message, Messages, Payload, PayloadError,
            PresenceChange, PresenceEntry, PresenceEvents, PushError, PushFailure, Reply,
            SocketClosed, Stats, WebSocketConfig as WsConfig,
        };

        #[doc = concat!("A Phoenix socket on ", $name, ". See [`phx_client::Socket`].")]
        pub type Socket = $crate::Socket<$rt>;
        #[doc = concat!("A joined channel on ", $name, ". See [`phx_client::Channel`].")]
        pub type Channel = $crate::Channel<$rt>;
        #[doc = concat!("Configures a [`Socket`] on ", $name, ". See [`phx_client::Builder`].")]
        pub type Builder = $crate::Builder<$rt>;
        /// A channel to be joined. See [`phx_client::ChannelBuilder`].
        pub type ChannelBuilder = $crate::ChannelBuilder<$rt>;
        /// A channel's presence view. See [`phx_client::PresenceView`].
        pub type PresenceView = $crate::PresenceView<$rt>;
        /// The driver future, for applications that spawn it themselves.
        pub type Driver = $crate::Driver<$rt>;
    };
}
