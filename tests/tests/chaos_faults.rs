//! Chaos over real sockets through a fault-injecting proxy, on both adapters: half-open links
//! (detected within two heartbeat intervals), delay, throttling, cuts and refused connects.

mod chaos;

mod tokio_adapter {
    use super::*;

    chaos_suite!(phx_tokio::Tokio, phx_tests::support::block_on_tokio);
}

mod async_std_adapter {
    use super::*;
    use std::future::Future;

    fn run(scenario: impl Future<Output = ()>) {
        async_std::task::block_on(scenario);
    }

    chaos_suite!(phx_async_std::AsyncStd, run);
}
