//! Phoenix Channels client for async-std (and smol).
//!
//! This crate will hold the async-std adapter over async-tungstenite, with the same API shape as
//! `phx-tokio`. It holds no protocol logic of its own.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use phx_proto as proto;
