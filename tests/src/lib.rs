//! Shared support for phx's cross-crate tests: the golden-trace loader, the bundled
//! Phoenix-compatible test server ([`server`]: a sans-IO model and its WebSocket wrapper) and,
//! as it lands, the deterministic simulation harness.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chaos;
pub mod demo;
pub mod server;
pub mod sim;
pub mod support;
pub mod tls;
pub mod traces;
