//! Sans-IO core of the phx Phoenix Channels client.
//!
//! phx-proto never touches a socket, a clock, a thread or the OS random source: it takes bytes
//! and the current time as inputs and hands back frames to send and deadlines to wait for. The
//! async adapters (`phx-tokio`, `phx-async-std`) drive it over a real WebSocket; tests, the
//! simulation harness and the fuzzers drive the very same code without one.
//!
//! This release holds the wire [`codec`]: the V1 and V2 JSON serializers and V2 binary frames.
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

pub mod codec;
mod payload;

pub use codec::{
    DecodeError, EncodeError, Frame, Message, Serializer, ServerSerializer, V1Json, V2Json,
};
pub use payload::{ByteStr, Payload, PayloadError, PayloadKind};
