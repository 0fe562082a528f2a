//! Both adapters through the platform TLS library (native-tls: OpenSSL on Linux), against the
//! test server behind a private CA: the conformance suite's TLS checks with `use_native_tls`.
//! Built with `--features native-tls`; CI runs it with
//! `cargo test -p phx-tests --features native-tls --test native_tls`.
#![cfg(feature = "native-tls")]

// Only the TLS scenario runs here; the whole suite runs in conformance_tokio.rs and
// conformance_async_std.rs.
mod conformance;

use phx_client::Runtime;

async fn through_native_tls<R: Runtime + Default>() {
    let untrusted = conformance::tls_verifies_certificates_with::<R>(|b| b.use_native_tls()).await;
    // The platform library's own words: proof that rustls was not used in its place.
    assert!(
        untrusted.starts_with("native-tls") && untrusted.contains("certificate verify failed"),
        "not a native-tls verification error: {untrusted}"
    );
}

#[test]
fn tokio_verifies_certificates_through_native_tls() {
    phx_tests::support::block_on_tokio(through_native_tls::<phx_tokio::Tokio>());
}

#[test]
fn async_std_verifies_certificates_through_native_tls() {
    async_std::task::block_on(through_native_tls::<phx_async_std::AsyncStd>());
}
