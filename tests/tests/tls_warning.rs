//! Turning certificate verification off is loud: `danger_accept_invalid_certs(true)` logs a
//! warning (captured here through tracing) and only then connects to a server whose
//! certificate nothing vouches for. Its own test binary, for its own global subscriber.

use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::tls::TestCa;
use phx_tokio::Socket;

mod log_capture;
use log_capture::Capture;

#[test]
fn accepting_invalid_certificates_is_logged_as_a_warning() {
    let capture = Capture::install(tracing::Level::WARN);

    let ca = TestCa::new();
    let h = BackgroundServer::start_tls(ServerConfig::default(), ca.server_config());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let verified = Socket::builder(&h.url())
            .secret_param("token", "secret")
            .connect()
            .await;
        assert!(verified.is_err(), "an untrusted certificate is refused");
        let text = capture.text();
        assert!(!text.contains("verification is OFF"), "{text}");

        let unverified = Socket::builder(&h.url())
            .secret_param("token", "secret")
            .danger_accept_invalid_certs(true)
            .connect()
            .await
            .expect("connects without verification");
        unverified.disconnect().await.unwrap();
    });
    let text = capture.text();
    assert!(
        text.contains("WARN") && text.contains("TLS certificate verification is OFF"),
        "{text}"
    );
}
