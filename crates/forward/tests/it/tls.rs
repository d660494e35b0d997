//! Both sinks over TLS: an `https://` webhook receiver (a small TLS server here) and a
//! `nats-server` with TLS on, each with a self-signed certificate only `ca_file` vouches for.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_forward::{JetStreamSink, Outcome, Sink, WebhookSink};
use switchyard_storage::{MemoryDataStore, OutboxRecord, OutboxStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::jetstream::{OwnServer, sink_config, start, unique, until, write};

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// An HTTPS server that answers each request `200` and hands its body over `bodies`.
async fn receiver(cert: &Path, key: &Path) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (bodies, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, bodies) = (acceptor.clone(), bodies.clone());
            tokio::spawn(async move {
                // A failed handshake (an untrusting client) just ends this connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                while let Some(body) = read_request(&mut tls).await {
                    let _ = bodies.send(body);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if tls.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// One HTTP/1.1 request's body (by `content-length`), or `None` when the connection ends.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("the sink sends content-length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(body)
}

/// Three records of one resource, as the outbox holds them.
fn records() -> Vec<OutboxRecord> {
    let store = MemoryDataStore::default();
    store.set_sinks(&["any"]).unwrap();
    write(&store, &["a"], 0, 3);
    let records = store.read(0, 10).unwrap();
    assert_eq!(records.len(), 3);
    records
}

#[tokio::test]
async fn an_https_webhook_is_trusted_through_ca_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (port, mut bodies) = receiver(&cert, &key).await;
    let url = format!("https://localhost:{port}/hook");
    let timeout = Duration::from_secs(5);
    let records = records();

    // The system's roots alone do not vouch for a self-signed certificate: retried, not sent.
    let untrusting = WebhookSink::new(&url, &[], timeout, None).unwrap();
    match untrusting.deliver(&records).await {
        Outcome::Retry { reason, .. } => assert!(reason.contains("certificate"), "{reason}"),
        other => panic!("a certificate no root vouches for is refused, got {other:?}"),
    }
    assert!(bodies.try_recv().is_err(), "nothing reached the receiver");

    let trusting = WebhookSink::new(&url, &["secret".into()], timeout, Some(&cert)).unwrap();
    assert_eq!(trusting.deliver(&records).await, Outcome::Delivered);
    let body: serde_json::Value = serde_json::from_slice(&bodies.recv().await.unwrap()).unwrap();
    let ids: Vec<&str> = body.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = records.iter().map(OutboxRecord::id).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_over_tls_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls_args = ["--tls", "--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()];
    let _server = OwnServer::start_with(port, &dir.path().join("js"), &tls_args);
    let (stream, prefix) = unique();
    let url = format!("tls://localhost:{port}");

    // Without ca_file the handshake fails: retried, never delivered.
    let untrusting = JetStreamSink::new(sink_config(&url, &stream, &prefix, true)).unwrap();
    assert!(matches!(untrusting.deliver(&records()).await, Outcome::Retry { .. }));

    let config = sink_config(&url, &stream, &prefix, true);
    let sink =
        JetStreamSink::new(switchyard_forward::JetStreamConfig { ca_file: Some(cert.clone()), ..config }).unwrap();
    let store = MemoryDataStore::default();
    let shutdown = CancellationToken::new();
    let tasks = start(&store, sink, &shutdown);
    write(&store, &["a", "b"], 0, 10);
    until("cursor at 20", || store.cursor("js").unwrap() == Some(20)).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

#[test]
fn a_missing_ca_file_is_refused_when_configured() {
    let (stream, prefix) = unique();
    let config = sink_config("tls://localhost:4222", &stream, &prefix, true);
    let missing = Some(PathBuf::from("/nonexistent/ca.pem"));
    assert!(JetStreamSink::new(switchyard_forward::JetStreamConfig { ca_file: missing, ..config }).is_err());
}
