//! Chaos over real sockets through a fault-injecting proxy, on both adapters: half-open links
//! (detected within two heartbeat intervals), delay, throttling, cuts and refused connects.

mod chaos;

use std::future::Future;

mod tokio_adapter {
    use super::*;

    fn run(scenario: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(scenario);
    }

    chaos_suite!(phx_tokio::Tokio, run);
}

mod async_std_adapter {
    use super::*;

    fn run(scenario: impl Future<Output = ()>) {
        async_std::task::block_on(scenario);
    }

    chaos_suite!(phx_async_std::AsyncStd, run);
}
