//! `phx serve`: the bundled Phoenix-compatible test server.

use std::net::SocketAddr;

use phx_tests::server::ws::TestServer;
use phx_tests::server::{ServerConfig, SocketIdMode};

use crate::args::ServeArgs;
use crate::error::{self, Failure};
use crate::signal;

/// Runs the test server until Ctrl-C. The first stdout line is the socket URL.
pub(crate) async fn run(args: ServeArgs) -> Result<(), Failure> {
    let addr = SocketAddr::new(args.host, args.port);
    // Each connection its own socket id, so `disconnect_me` closes only the sender's.
    let config = ServerConfig {
        socket_id: SocketIdMode::PerConnection,
        ..ServerConfig::default()
    };
    let server = TestServer::bind(addr, config).await.map_err(|e| {
        Failure::new(
            error::FAILED,
            format!(
                "cannot listen on {addr}: {e} (choose another --port, or --port 0 for a free one)"
            ),
        )
    })?;
    let ctrl_c = signal::ctrl_c();
    let url = server.url();
    println!("{url}");
    eprintln!(
        "phx serve: the bundled Phoenix-compatible test server is listening on {url}\n\
         \x20 auth        --token secret (or --param token=secret)\n\
         \x20 room:*      ping, error_reply, custom_status, noreply, slow {{\"ms\":N}}, shout,\n\
         \x20             push_me {{\"event\":E}}, flood {{\"n\":N}}, crash, stop... (phx serve --help)\n\
         \x20 presence:*  tracks the `user` join param (--join-param user=NAME)\n\
         \x20 try         phx join {url} room:lobby --token secret\n\
         Ctrl-C stops it."
    );
    ctrl_c.await;
    server.shutdown().await;
    Ok(())
}
