//! TLS server configuration from PEM files, reloaded when the files change so certificates,
//! client CAs and CRLs rotate without a restart. Handshakes happen in each connection's task,
//! never here.
//!
//! Two acceptors share the server certificate: the HTTPS one never asks for a client
//! certificate; the MQTTS one asks as [`ClientAuth`] says (see [`crate::client_cert`]). A
//! reload checks the client certificates of live connections again ([`crate::certified`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_broker::Broker;
use switchyard_identity::ClientCertificate;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::certified::{Certified, Revoked, Tracked};
use crate::client_cert::{ClientAuth, ClientCaFiles, ClientCerts};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("cannot read private key {path}: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("cannot read certificate revocation list {path}: {source}")]
    Crl { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("certificate file {0} holds no certificate")]
    Empty(PathBuf),
    #[error("client certificate authorities: {0}")]
    ClientCa(String),
    #[error("certificate and key do not form a valid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificate chain and key live, and how clients are asked for certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates on the MQTTS listener (*default* off).
    pub client_auth: ClientAuth,
    /// The tenants' CAs for client certificates; unused while `client_auth` is off.
    pub client_cas: Vec<ClientCaFiles>,
}

impl TlsFiles {
    /// A server certificate and key, without client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into(), client_auth: ClientAuth::Off, client_cas: Vec::new() }
    }

    /// Every file read, in a fixed order.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let client = self.client_auth != ClientAuth::Off;
        let cas = self.client_cas.iter().filter(move |_| client);
        [self.cert.as_path(), self.key.as_path()]
            .into_iter()
            .chain(cas.flat_map(|c| std::iter::once(c.ca.as_path()).chain(c.crl.as_deref())))
    }
}

/// What identifies a file's content cheaply: modification time, size and inode (a file
/// replaced by a rename has a new inode even when its time and size are the same).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    files
        .paths()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len(), m.ino()))))
        .collect()
}

/// One reading of the files.
struct Loaded {
    https: TlsAcceptor,
    mqtt: TlsAcceptor,
    clients: Option<ClientCerts>,
    stamps: Vec<Stamp>,
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let stamps = stamps(files);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert { path: files.cert.clone(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(files.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let clients = match files.client_auth {
        ClientAuth::Off => None,
        mode => Some(ClientCerts::load(&files.client_cas, mode, &provider)?),
    };
    let config = |verifier: Arc<dyn ClientCertVerifier>| -> Result<TlsAcceptor, TlsError> {
        let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    };
    let https = config(WebPkiClientVerifier::no_client_auth())?;
    let mqtt = match &clients {
        Some(c) => config(Arc::clone(&c.handshake))?,
        None => https.clone(),
    };
    Ok(Loaded { https, mqtt, clients, stamps })
}

/// The current configuration, swapped when the files change.
pub struct TlsSource {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// Live connections' client certificates; locked before `current` wherever both are.
    certified: Arc<Mutex<Certified>>,
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSource").field("files", &self.files).finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Load the files now; fails when they are missing or invalid.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsSource>, TlsError> {
        let loaded = load(&files)?;
        Ok(Arc::new(TlsSource { files, current: RwLock::new(Arc::new(loaded)), certified: Default::default() }))
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The acceptor for a new HTTPS connection (no client certificate is asked for).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current().https.clone()
    }

    /// The acceptor for a new MQTTS connection, asking for a client certificate as configured.
    pub fn mqtt_acceptor(&self) -> TlsAcceptor {
        self.current().mqtt.clone()
    }

    /// What a client's verified certificate chain says, checked against the tenants' CAs as
    /// they are now; `None` without client certificates or without a chain. The chain is kept,
    /// for reloads to check again, until the [`Tracked`] guard is dropped with the connection.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<(ClientCertificate, Tracked)> {
        let mut certified = self.certified.lock().unwrap_or_else(|e| e.into_inner());
        let identified = self.current().clients.as_ref()?.identify(chain)?;
        let id = certified.insert(chain, identified.clone());
        Some((identified, Tracked { registry: Arc::clone(&self.certified), id }))
    }

    /// Reload if the files changed since the last load. Bad new files keep the old config.
    /// Answers the devices whose live connections' certificates the new files no longer
    /// trust, per tenant (their connections are to be closed: [`Revoked::close`]).
    pub fn reload_if_changed(&self) -> Vec<Revoked> {
        if stamps(&self.files) == self.current().stamps {
            return Vec::new();
        }
        let loaded = match load(&self.files) {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the old ones");
                return Vec::new();
            }
        };
        // Under the lock, so no connection is identified by the old files and tracked after
        // the check below.
        let mut certified = self.certified.lock().unwrap_or_else(|e| e.into_inner());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&loaded);
        tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
        let Some(clients) = &loaded.clients else { return Vec::new() };
        let revoked = certified.recheck(|chain| clients.identify(chain));
        for r in &revoked {
            tracing::info!(
                domain = %r.domain, resource = %r.resource,
                "a live connection's client certificate is no longer trusted; the device's connections are closed"
            );
        }
        revoked
    }

    /// Poll the files every `every` until shutdown, closing the connections of devices whose
    /// certificates a reload no longer trusts; again `connect_timeout` later, for a connection
    /// that completed its handshake before the reload but had not sent CONNECT yet.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        broker: Broker,
        connect_timeout: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let revoked = self.reload_if_changed();
            if revoked.is_empty() {
                continue;
            }
            for r in &revoked {
                r.clone().close(&broker).await;
            }
            let broker = broker.clone();
            tokio::spawn(async move {
                tokio::time::sleep(connect_timeout).await;
                for r in revoked {
                    r.close(&broker).await;
                }
            });
        }
    }
}
