//! TLS to sinks: the roots an `https://` webhook's certificate is checked against — the
//! system's trusted roots, plus the certificates of an optional PEM `ca_file` (a private CA).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::ForwardError;

/// A client configuration that trusts the system's roots and those of `ca_file`. Fails when
/// `ca_file` cannot be read or holds no certificate, or when no root at all is trusted.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ForwardError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        for cert in ca_certificates(path).map_err(ForwardError::Config)? {
            roots.add(cert).map_err(|e| ForwardError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    } else if added == 0 {
        return Err(ForwardError::Config(
            "no trusted root certificates on this system: install ca-certificates or set ca_file".into(),
        ));
    }
    with_roots(roots)
}

/// The certificates of the PEM file `path`; fails, naming the file, when it cannot be read or
/// holds none. Every sink with a `ca_file` checks it this way at start, so a garbled file
/// refuses the start instead of failing each connection attempt.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |why: String| format!("ca_file {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

/// A configuration for a connector that only ever speaks plain HTTP: it trusts no root.
pub fn plain_only() -> Result<rustls::ClientConfig, ForwardError> {
    with_roots(RootCertStore::empty())
}

fn with_roots(roots: RootCertStore) -> Result<rustls::ClientConfig, ForwardError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwardError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
