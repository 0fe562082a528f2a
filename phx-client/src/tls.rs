//! TLS for `wss://` endpoints, configured once and shared by the adapters.
//!
//! rustls is the default backend, with certificate verification always on: the trusted roots are
//! the bundled Mozilla roots (feature `webpki-roots`), the operating system's (feature
//! `native-roots`), and any CA added with [`crate::Builder::add_root_certificate_pem`].
//! Verification can only be turned off with the loudly named
//! [`crate::Builder::danger_accept_invalid_certs`]. The `native-tls` feature offers the platform
//! library instead ([`crate::Builder::use_native_tls`]).

use std::fmt;
#[cfg(feature = "rustls")]
use std::sync::Arc;

/// What a `wss://` connection is secured with; built once when the socket starts and used by
/// every dial.
#[derive(Clone)]
#[non_exhaustive]
pub enum TlsConnector {
    /// rustls with this client configuration.
    #[cfg(feature = "rustls")]
    Rustls(Arc<rustls::ClientConfig>),
    /// The platform library through native-tls, with these settings.
    #[cfg(feature = "native-tls")]
    NativeTls(NativeTls),
}

/// Validated native-tls settings, turned into a connector by [`NativeTls::builder`].
#[cfg(feature = "native-tls")]
#[derive(Clone)]
pub struct NativeTls {
    roots: Vec<native_tls::Certificate>,
    accept_invalid_certs: bool,
}

#[cfg(feature = "native-tls")]
impl NativeTls {
    /// A connector builder with these settings applied.
    pub fn builder(&self) -> native_tls::TlsConnectorBuilder {
        let mut b = native_tls::TlsConnector::builder();
        b.danger_accept_invalid_certs(self.accept_invalid_certs);
        for cert in &self.roots {
            b.add_root_certificate(cert.clone());
        }
        b
    }
}

impl fmt::Debug for TlsConnector {
    // Without a TLS feature the enum has no variants and the call is unreachable.
    #[allow(unreachable_code)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            #[cfg(feature = "rustls")]
            Self::Rustls(_) => "TlsConnector::Rustls",
            #[cfg(feature = "native-tls")]
            Self::NativeTls(_) => "TlsConnector::NativeTls",
        })
    }
}

/// TLS settings collected by the builder.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    /// Extra trusted roots, DER-encoded.
    pub(crate) roots: Vec<Vec<u8>>,
    /// A root certificate that failed to parse, reported when the socket starts.
    pub(crate) invalid_root: Option<String>,
    pub(crate) accept_invalid_certs: bool,
    #[cfg(feature = "native-tls")]
    pub(crate) native_tls: bool,
}

impl TlsOptions {
    /// Adds every certificate of a PEM bundle as a trusted root.
    pub(crate) fn add_pem(&mut self, pem: &[u8]) {
        let text = String::from_utf8_lossy(pem);
        let mut found = 0;
        let mut rest = text.as_ref();
        while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
            let body = &rest[start + "-----BEGIN CERTIFICATE-----".len()..];
            let Some(end) = body.find("-----END CERTIFICATE-----") else {
                self.invalid_root = Some("unterminated PEM certificate".into());
                return;
            };
            match base64_decode(&body[..end]) {
                Some(der) => self.roots.push(der),
                None => {
                    self.invalid_root = Some("invalid base64 in a PEM certificate".into());
                    return;
                }
            }
            found += 1;
            rest = &body[end..];
        }
        if found == 0 {
            self.invalid_root = Some("no PEM certificate found".into());
        }
    }

    /// Checks the options without building anything (for `ws://` endpoints, which never use
    /// the connector).
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(e) = &self.invalid_root {
            return Err(format!("root certificate: {e}"));
        }
        if self.accept_invalid_certs {
            tracing::warn!(
                "TLS certificate verification is OFF (danger_accept_invalid_certs): \
                 any server can impersonate the endpoint"
            );
        }
        Ok(())
    }

    /// Builds the connector; `Ok(None)` when no TLS backend is compiled in.
    pub(crate) fn connector(&self) -> Result<Option<TlsConnector>, String> {
        self.check()?;
        // native-tls when asked for, or when it is the only backend compiled in.
        #[cfg(feature = "native-tls")]
        if self.native_tls || cfg!(not(feature = "rustls")) {
            let roots = self
                .roots
                .iter()
                .map(|der| native_tls::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("root certificate: {e}"))?;
            let settings = NativeTls {
                roots,
                accept_invalid_certs: self.accept_invalid_certs,
            };
            // Fail now, not at the first dial, if the platform library refuses the settings.
            settings
                .builder()
                .build()
                .map_err(|e| format!("native-tls: {e}"))?;
            return Ok(Some(TlsConnector::NativeTls(settings)));
        }
        #[cfg(feature = "rustls")]
        {
            // The default configuration (the bundled or system roots, verification on) is
            // built once per process: its root store alone is tens of KiB.
            if self.roots.is_empty() && !self.accept_invalid_certs {
                static DEFAULT: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
                    std::sync::OnceLock::new();
                return DEFAULT
                    .get_or_init(|| rustls_config(self).map(Arc::new))
                    .clone()
                    .map(|c| Some(TlsConnector::Rustls(c)));
            }
            rustls_config(self).map(|c| Some(TlsConnector::Rustls(Arc::new(c))))
        }
        #[cfg(not(feature = "rustls"))]
        {
            Ok(None)
        }
    }
}

#[cfg(feature = "rustls")]
fn rustls_config(options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?;
    let mut config = if options.accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(danger::AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        #[cfg(feature = "webpki-roots")]
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        #[cfg(feature = "native-roots")]
        for cert in rustls_native_certs::load_native_certs().certs {
            // A platform root rustls cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        for der in &options.roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("root certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(
                "no trusted root certificates: enable the `webpki-roots` or `native-roots` \
                 feature, or add a root with add_root_certificate_pem"
                    .into(),
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(feature = "rustls")]
mod danger {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any certificate (signatures are still checked). Only reachable through
    /// `danger_accept_invalid_certs`.
    #[derive(Debug)]
    pub(super) struct AcceptAny(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_are_read_and_garbage_is_reported() {
        let mut o = TlsOptions::default();
        o.add_pem(b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAwQ=\n-----END CERTIFICATE-----\n");
        assert_eq!(o.roots, [vec![0u8, 1, 2], vec![3u8, 4]]);
        assert!(o.invalid_root.is_none());
        let mut bad = TlsOptions::default();
        bad.add_pem(b"not a certificate");
        assert!(bad.connector().unwrap_err().contains("no PEM certificate"));
    }
}
