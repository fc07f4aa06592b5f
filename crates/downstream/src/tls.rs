//! TLS to `https://` backends: rustls with the `ring` provider, trusting the system's roots
//! (read once per process, on the first https backend) plus an optional per-backend `ca_file`
//! (PEM). The server name checked and sent as SNI is the URL's host (hyper-rustls); ALPN is set
//! by the connector to the protocol the backend is configured for.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The `ca_file` cannot be read or holds no PEM certificate.
    #[error("cannot use {path}: {reason}")]
    CaFile {
        /// The file's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No root certificate at all: neither the system store nor a `ca_file` gave one.
    #[error("no trusted root certificate: the system store is empty; set ca_file")]
    NoRoots,
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The system's root certificates, loaded once. Certificates that fail to load are skipped (a
/// store may hold some rustls cannot use); an unreadable store gives an empty list.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The TLS configuration of a backend at `target`: for `https://`, the system roots plus
/// `ca_file`; none for `http://`.
pub(crate) fn for_target(
    target: &http::Uri,
    ca_file: Option<&Path>,
) -> Result<Option<rustls::ClientConfig>, TlsError> {
    match target.scheme_str() {
        Some("https") => client_config(ca_file).map(Some),
        _ => Ok(None),
    }
}

/// The client configuration for one backend: system roots plus `ca_file`.
fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let bad = |reason: String| TlsError::CaFile { path: shown.clone(), reason };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
