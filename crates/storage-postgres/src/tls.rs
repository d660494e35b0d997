//! TLS to the database. It is used when the URL asks for it (`sslmode=require`) or a `ca_file`
//! is configured (which implies `require`); the server's certificate and host name are then
//! checked against the system's trusted roots and the PEM certificates of `ca_file`, so a
//! server this node cannot authenticate is never talked to. Otherwise connections are plain,
//! for a database on loopback or a private network (`sslmode=prefer`, the default, then stays
//! plain: there is nothing to check a certificate against that the operator chose).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgConfig, PgError};

/// The TLS connector `config` calls for, if any; with a `ca_file`, `pg` is set to require TLS.
pub(crate) fn connector(
    config: &PgConfig,
    pg: &mut tokio_postgres::Config,
) -> Result<Option<MakeRustlsConnect>, PgError> {
    let required = matches!(pg.get_ssl_mode(), SslMode::Require);
    if !required && config.ca_file.is_none() {
        return Ok(None);
    }
    pg.ssl_mode(SslMode::Require);
    Ok(Some(MakeRustlsConnect::new(client_config(config.ca_file.as_deref())?)))
}

/// Trusts the system's roots and those of `ca_file`.
fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let bad = |why: String| PgError::Tls(format!("ca_file {}: {why}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(PgError::Tls(
            "no trusted root certificates on this system: install ca-certificates or set storage.ca_file".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    #[test]
    fn tls_only_when_asked_for() {
        let plain = PgConfig::new("postgres://h/d");
        for url in ["postgres://h/d", "postgres://h/d?sslmode=prefer", "postgres://h/d?sslmode=disable"] {
            assert!(connector(&plain, &mut pg(url)).unwrap().is_none(), "{url}");
        }
        let mut required = pg("postgres://h/d?sslmode=require");
        assert!(connector(&plain, &mut required).unwrap().is_some());

        let dir = std::env::temp_dir().join(format!("sy-pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["db".to_owned()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let with_ca = PgConfig { ca_file: Some(ca), ..plain.clone() };
        let mut prefer = pg("postgres://h/d");
        assert!(connector(&with_ca, &mut prefer).unwrap().is_some());
        assert!(matches!(prefer.get_ssl_mode(), SslMode::Require), "a ca_file requires TLS");

        let garbled = dir.join("garbled.pem");
        std::fs::write(&garbled, "not a certificate\n").unwrap();
        let bad = PgConfig { ca_file: Some(garbled), ..plain };
        let err = connector(&bad, &mut pg("postgres://h/d")).err().expect("refused");
        assert!(err.to_string().contains("garbled.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
