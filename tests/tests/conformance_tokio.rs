//! The adapter conformance suite on phx-tokio.

mod conformance;

use std::future::Future;

fn run(scenario: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(scenario);
}

conformance_suite!(phx_tokio::Tokio, run);
