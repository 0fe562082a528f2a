//! The README demo on async-std: the same steps as the tokio demo. The bundled test server
//! (which is built on tokio) runs on a runtime thread of its own.
//!
//! Run: `cargo run -p phx-async-std --example demo`

use phx_tests::server::ws::BackgroundServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = BackgroundServer::start(phx_tests::demo::server_config());
    async_std::task::block_on(phx_tests::demo::run::<phx_async_std::AsyncStd>(&server))
}
