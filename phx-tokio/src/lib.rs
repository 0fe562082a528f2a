//! Phoenix Channels client for tokio.
//!
//! This crate will hold the tokio adapter: one driver task that owns a [`phx_proto`] socket, the
//! tokio-tungstenite WebSocket and the timers, with cheap cloneable handles for joining channels,
//! pushing and reading messages. It holds no protocol logic of its own.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use phx_proto as proto;
