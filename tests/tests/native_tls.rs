//! Both adapters through the platform TLS library (native-tls: OpenSSL on Linux), against the
//! test server behind a private CA. Built with `--features native-tls`; CI runs it with
//! `cargo test -p phx-tests --features native-tls --test native_tls`.
#![cfg(feature = "native-tls")]

use phx_client::{Builder, ConnectError, Runtime};
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use phx_tests::tls::TestCa;
use serde_json::json;

fn builder<R: Runtime + Default>(h: &BackgroundServer) -> Builder<R> {
    phx_client::Socket::<R>::builder(&h.url())
        .secret_param("token", "secret")
        .use_native_tls()
}

async fn verifies_certificates<R: Runtime + Default>() {
    let ca = TestCa::new();
    let h = BackgroundServer::start_tls(ServerConfig::default(), ca.server_config());
    let socket = builder::<R>(&h)
        .add_root_certificate_pem(ca.ca_pem().as_bytes())
        .connect()
        .await
        .expect("a certificate from the trusted CA connects");
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let reply = lobby.push("ping", &json!({"over": "native-tls"})).await;
    assert!(reply.unwrap().is_ok());
    match builder::<R>(&h).connect().await {
        // The platform library's own words: proof that rustls was not used instead.
        Err(ConnectError::Tls(msg)) => assert!(
            msg.starts_with("native-tls") && msg.contains("certificate verify failed"),
            "not a native-tls verification error: {msg}"
        ),
        other => panic!("an untrusted certificate must fail with a TLS error, got {other:?}"),
    }
    let insecure = builder::<R>(&h)
        .danger_accept_invalid_certs(true)
        .connect()
        .await
        .expect("verification explicitly off");
    assert!(insecure.channel("room:lobby").join().await.is_ok());
}

#[test]
fn tokio_verifies_certificates_through_native_tls() {
    phx_tests::support::block_on_tokio(verifies_certificates::<phx_tokio::Tokio>());
}

#[test]
fn async_std_verifies_certificates_through_native_tls() {
    async_std::task::block_on(verifies_certificates::<phx_async_std::AsyncStd>());
}
