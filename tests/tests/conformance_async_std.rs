//! The adapter conformance suite on phx-async-std, and the async-std adapter inside a smol
//! executor.

mod conformance;

use std::future::Future;

fn run(scenario: impl Future<Output = ()>) {
    async_std::task::block_on(scenario);
}

conformance_suite!(phx_async_std::AsyncStd, run);

/// smol users run the async-std adapter unchanged: its IO and timers are async-io's, the
/// reactor smol uses too.
#[test]
fn runs_inside_a_smol_executor() {
    smol::block_on(conformance::join_push_and_replies::<phx_async_std::AsyncStd>());
    smol::block_on(conformance::detects_a_missed_heartbeat::<
        phx_async_std::AsyncStd,
    >());
}
