//! TLS server configuration from PEM files, reloaded when the files change so certificates
//! rotate without a restart. Handshakes happen in each connection's task, never here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("cannot read private key {path}: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("certificate file {0} holds no certificate")]
    Empty(PathBuf),
    #[error("certificate and key do not form a valid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificate chain and key live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The current acceptor, swapped when the files change.
pub struct TlsSource {
    files: TlsFiles,
    current: RwLock<(TlsAcceptor, Option<SystemTime>)>,
}

fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert { path: files.cert.clone(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(files.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn modified(files: &TlsFiles) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(&files.cert).max(m(&files.key))
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSource").field("files", &self.files).finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Load the files now; fails when they are missing or invalid.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsSource>, TlsError> {
        let stamp = modified(&files);
        let acceptor = acceptor(&files, &[])?;
        Ok(Arc::new(TlsSource { files, current: RwLock::new((acceptor, stamp)) }))
    }

    /// The acceptor to use for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Reload if the files changed since the last load. A bad new file keeps the old config.
    pub fn reload_if_changed(&self) {
        let stamp = modified(&self.files);
        if stamp == self.current.read().unwrap_or_else(|e| e.into_inner()).1 {
            return;
        }
        match acceptor(&self.files, &[]) {
            Ok(acceptor) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = (acceptor, stamp);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the old one"),
        }
    }

    /// Poll the files every `every` until shutdown.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => self.reload_if_changed(),
            }
        }
    }
}
