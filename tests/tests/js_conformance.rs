//! Conformance of the bundled test server with the official JavaScript client: `phoenix`
//! 1.8.16 from npm (the version the golden traces were recorded with) runs
//! `tests/js/conformance.js` under node against the server, and must pass.
//!
//! Needs `node` (20+) and `npm`; the pinned packages are installed on first use by
//! `tests/js/install.sh`. Without node the test fails and says how to install it.

mod js_support;

use std::time::Duration;

use phx_tests::server::ServerConfig;
use phx_tests::server::ws::TestServer;

#[test]
fn official_js_client_passes_the_scenario_against_the_test_server() {
    js_support::prepare();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let server = TestServer::start(ServerConfig::default()).await;
        let run = js_support::run_script("conformance.js", &server, Duration::from_secs(90)).await;
        run.assert_success("conformance.js");
        assert!(
            run.output.lines().any(|l| l == "PASS"),
            "the script exited 0 without finishing:\n{}",
            run.output
        );
        // The server saw what the script did.
        let stats = server.stats().await;
        assert_eq!(
            stats.connections_refused, 3,
            "three refused handshakes (wrong token, no credentials, wrong auth token): {stats:?}"
        );
        assert!(stats.heartbeats >= 2, "heartbeats and a ping: {stats:?}");
        assert_eq!(
            server.joins("room:crashy").await,
            2,
            "a join and the rejoin after the crash"
        );
        assert_eq!(
            server.joins("room:stoppy").await,
            1,
            "no rejoin after phx_close"
        );
        assert_eq!(
            server.open_connections().await,
            0,
            "every socket disconnected"
        );
        server.shutdown().await;
    });
}
