//! The README's first command runs the demo; this runs the same code on both runtimes, so a
//! demo that fails or hangs fails the tests.

use phx_tests::server::ws::BackgroundServer;

#[test]
fn the_demo_runs_on_tokio() {
    let server = BackgroundServer::start(phx_tests::demo::server_config());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime
        .block_on(phx_tests::demo::run::<phx_tokio::Tokio>(&server))
        .expect("the demo succeeds");
}

#[test]
fn the_demo_runs_on_async_std() {
    let server = BackgroundServer::start(phx_tests::demo::server_config());
    async_std::task::block_on(phx_tests::demo::run::<phx_async_std::AsyncStd>(&server))
        .expect("the demo succeeds");
}
