//! Certificates made at test time (rcgen) for the TLS tests: a private CA and a server
//! certificate it signed for `localhost` and `127.0.0.1`.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway certificate authority and a server certificate it issued.
#[derive(Debug)]
pub struct TestCa {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Generates the CA and a `localhost` server certificate.
    ///
    /// # Panics
    /// If rcgen or rustls refuse their input (never with these fixed parameters).
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("cannot make test certificates: {e}"))
    }

    fn try_new() -> Result<Self, Box<dyn std::error::Error>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "phx test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&leaf_key, &ca)?;
        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate, PEM-encoded: trust it to connect.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server's TLS configuration (certificate chain and key).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
