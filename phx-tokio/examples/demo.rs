//! The README demo on tokio: starts the bundled Phoenix-compatible test server in-process on a
//! free port, then connects, joins, pushes, receives a broadcast and a presence list, survives a
//! forced server restart by rejoining, and prints what happened.
//!
//! Run: `cargo run -p phx-tokio --example demo`

use phx_tests::server::ws::TestServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::start(phx_tests::demo::server_config()).await;
    phx_tests::demo::run::<phx_tokio::Tokio>(&server).await?;
    server.shutdown().await;
    Ok(())
}
