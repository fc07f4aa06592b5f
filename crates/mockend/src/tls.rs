//! TLS for simulated backends: a throwaway certificate authority ([`TestCa`]) that issues
//! server certificates for given names, and the server configuration a [`crate::MockServer`]
//! serves https with ([`MockServer::spawn_tls`](crate::MockServer::spawn_tls)). For tests:
//! keys live in memory only and the CA is new each time.

use crate::error::MockError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A certificate authority made up for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate (DER) and its private key, issued by a [`TestCa`].
#[derive(Debug)]
pub struct ServerIdentity {
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestCa {
    /// A new self-signed CA with a fresh key and a name of its own (clients look an issuer
    /// up by name: two CAs with one name would fail as a bad signature, not an unknown CA).
    pub fn new() -> Result<Self, MockError> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let mut params = CertificateParams::new(Vec::new())?;
        let serial = MADE.fetch_add(1, Ordering::Relaxed);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mockend test CA {} #{serial}", std::process::id()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { issuer: Issuer::new(params, key), pem })
    }

    /// The CA's certificate in PEM, as a client's trust file holds it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `name` (a DNS name or an IP address), signed by this CA.
    pub fn issue(&self, name: &str) -> Result<ServerIdentity, MockError> {
        let key = KeyPair::generate()?;
        let certificate = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &self.issuer)?;
        Ok(ServerIdentity { certificate: certificate.der().clone(), key: key.serialize_der().into() })
    }
}

impl ServerIdentity {
    /// The rustls server configuration presenting this certificate (ring provider, TLS 1.2
    /// and 1.3, ALPN `h2` and `http/1.1`).
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, MockError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
