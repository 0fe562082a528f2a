//! Shared support for phx's cross-crate tests: the golden-trace loader (and, as they land, the
//! bundled Phoenix-compatible test server and the deterministic simulation harness).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod server;
pub mod traces;
