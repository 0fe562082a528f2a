//! The adapter conformance suite on phx-tokio.

mod conformance;

conformance_suite!(phx_tokio::Tokio, phx_tests::support::block_on_tokio);
