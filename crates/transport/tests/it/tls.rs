//! MQTT over TLS: the certificate is reloaded when its files change, without a restart.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use switchyard_transport::{TlsFiles, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn self_signed() -> (String, String, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = certified.cert.der().clone();
    (certified.cert.pem(), certified.signing_key.serialize_pem(), der)
}

/// True when a client trusting only `root` completes a handshake with `acceptor`.
async fn handshake_trusting(source: &TlsSource, root: &CertificateDer<'static>) -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = source.acceptor();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.write_all(b"ok").await;
            let _ = tls.shutdown().await;
        }
    });
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let ok = match connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await {
        Ok(mut tls) => {
            let mut buf = [0u8; 2];
            tls.read_exact(&mut buf).await.is_ok() && &buf == b"ok"
        }
        Err(_) => false,
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    ok
}

#[tokio::test]
async fn certificate_is_reloaded_when_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path().join("server.pem"), dir.path().join("server.key"));
    let (cert_a, key_a, der_a) = self_signed();
    std::fs::write(&files.cert, cert_a).unwrap();
    std::fs::write(&files.key, key_a).unwrap();
    let source = TlsSource::load(files.clone()).unwrap();
    assert!(handshake_trusting(&source, &der_a).await);

    // A half-written replacement (bad key) keeps the old certificate in service.
    std::fs::write(&files.key, "not a key").unwrap();
    source.reload_if_changed();
    assert!(handshake_trusting(&source, &der_a).await, "bad files keep the old config");

    let (cert_b, key_b, der_b) = self_signed();
    std::fs::write(&files.cert, cert_b).unwrap();
    std::fs::write(&files.key, key_b).unwrap();
    source.reload_if_changed();
    assert!(handshake_trusting(&source, &der_b).await, "new certificate served");
    assert!(!handshake_trusting(&source, &der_a).await, "old certificate retired");
}

#[test]
fn missing_or_invalid_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path().join("absent.pem"), dir.path().join("absent.key"));
    let err = TlsSource::load(files).unwrap_err().to_string();
    assert!(err.contains("absent.pem"), "{err}");
}
