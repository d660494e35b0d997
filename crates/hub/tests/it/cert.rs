//! Devices authenticated by a TLS client certificate (mTLS) on a real MQTTS listener: the
//! certificate's tenant and name decide the device, one tenant's CA never vouches for another's
//! devices, revoked certificates fail, passwords still work in optional mode, and replaced CA
//! and CRL files take effect for new connections and close live ones they no longer trust.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use switchyard_broker::{Broker, BrokerConfig};
use switchyard_codec::{Connect, Packet, Properties, Protocol, Publish, QoS};
use switchyard_hub::{Hub, HubConfig};
use switchyard_identity::{Domain, ResourceId};
use switchyard_storage::NullStore;
use switchyard_transport::{ClientAuth, ClientCaFiles, ListenerLimits, Revoked, TlsFiles, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::memory_hub;

const WAIT: Duration = Duration::from_secs(5);

/// A CA that issues client certificates and revocation lists.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A device certificate with this CN and serial number.
    fn issue(&self, cn: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { chain: vec![cert.der().clone()], key: key.serialize_der() }
    }

    /// A CRL revoking these serial numbers.
    fn crl(&self, revoked: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// Writes `text` to `path` by a rename, as a deployment would replace it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Running {
    addr: SocketAddr,
    hub: Arc<Hub>,
    broker: Broker,
    tls: Arc<TlsSource>,
    server_root: CertificateDer<'static>,
    dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One CA file per (domain, CA), written as `{n}.pem` (with `{n}.crl` when a CRL is given).
async fn start(mode: ClientAuth, cas: &[(&str, &Ca, Option<String>)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let mut files = TlsFiles::new(dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&files.cert, server.cert.pem()).unwrap();
    std::fs::write(&files.key, server.signing_key.serialize_pem()).unwrap();
    files.client_auth = mode;
    for (n, (domain, ca, crl)) in cas.iter().enumerate() {
        let path = |ext: &str| dir.path().join(format!("{n}.{ext}"));
        std::fs::write(path("pem"), ca.pem()).unwrap();
        if let Some(crl) = crl {
            std::fs::write(path("crl"), crl).unwrap();
        }
        files.client_cas.push(ClientCaFiles {
            domain: Domain::parse(domain).unwrap(),
            ca: path("pem"),
            crl: crl.as_ref().map(|_| path("crl")),
        });
    }
    let tls = TlsSource::load(files).unwrap();
    let (hub, _) = memory_hub(HubConfig::default());
    let stop = CancellationToken::new();
    let (broker, _router) =
        Broker::start(BrokerConfig::default(), Arc::new(NullStore), hub.clone(), stop.clone()).expect("broker starts");
    hub.attach(broker.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ListenerLimits { connect_timeout: WAIT, connections: Arc::new(Semaphore::new(100)) };
    let tracker = TaskTracker::new();
    tokio::spawn(switchyard_transport::run_listener(
        listener,
        Some(tls.clone()),
        broker.clone(),
        limits,
        tracker,
        stop.clone(),
    ));
    Running { addr, hub, broker, tls, server_root: server.cert.der().clone(), dir, stop }
}

impl Running {
    fn ca_path(&self, n: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("{n}.{ext}"))
    }

    fn tenant(&self, domain: &str) -> switchyard_identity::Provisioned {
        self.hub.registry().create_tenant(Domain::parse(domain).unwrap()).unwrap()
    }

    /// Connects over TLS (with `leaf` as client certificate, if any) and sends CONNECT; the
    /// CONNACK code, or `None` when the server closed without one (the handshake failed).
    async fn connect(&self, leaf: Option<&Leaf>, protocol: Protocol, user: Option<&str>, pass: Option<&str>) -> Conn {
        self.connect_as("c", leaf, protocol, user, pass).await
    }

    /// [`Running::connect`] with client id `client_id`.
    async fn connect_as(
        &self,
        client_id: &str,
        leaf: Option<&Leaf>,
        protocol: Protocol,
        user: Option<&str>,
        pass: Option<&str>,
    ) -> Conn {
        let mut roots = RootCertStore::empty();
        roots.add(self.server_root.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match leaf {
            Some(leaf) => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
                builder.with_client_auth_cert(leaf.chain.clone(), key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.ok();
        let mut conn = Conn { stream, buf: BytesMut::new(), protocol, connack: None };
        let connect = Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: user.map(Into::into),
            password: pass.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            properties: Properties::default(),
        };
        conn.send(&Packet::Connect(Box::new(connect))).await;
        if let Some(Packet::ConnAck(ack)) = conn.recv().await {
            conn.connack = Some(ack.code);
        }
        conn
    }
}

/// An MQTT client over TLS, built on the codec.
struct Conn {
    /// `None` when the handshake failed on the client's side.
    stream: Option<TlsStream<TcpStream>>,
    buf: BytesMut,
    protocol: Protocol,
    connack: Option<u8>,
}

impl Conn {
    async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        switchyard_codec::encode(packet, self.protocol, &mut out).unwrap();
        if let Some(stream) = &mut self.stream {
            let _ = stream.write_all(&out).await;
        }
    }

    /// The next packet, or `None` once the server closed (or refused the TLS handshake).
    async fn recv(&mut self) -> Option<Packet> {
        let stream = self.stream.as_mut()?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = switchyard_codec::decode(&mut self.buf, Some(self.protocol), usize::MAX).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Err(_) => panic!("no answer from the server within {WAIT:?}"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Publishes at QoS 1: whether it was accepted (a PUBACK with a success code, "no matching
    /// subscribers" included) rather than refused by closing the connection.
    async fn publish(&mut self, topic: &str) -> bool {
        let publish = Publish {
            topic: topic.into(),
            qos: QoS::AtLeastOnce,
            packet_id: 1,
            payload: Bytes::from_static(b"{}"),
            ..Publish::default()
        };
        self.send(&Packet::Publish(publish)).await;
        matches!(self.recv().await, Some(Packet::PubAck(ack)) if ack.reason < 0x80)
    }
}

#[tokio::test]
async fn a_device_certificate_connects_without_password_and_publishes_its_events() {
    let ca = Ca::new("a devices");
    let b = start(ClientAuth::Optional, &[("a.example", &ca, None)]).await;
    b.tenant("a.example");
    let leaf = ca.issue("s1", 1);
    for protocol in [Protocol::V5, Protocol::V311] {
        for user in [None, Some("a.example/s1")] {
            let mut c = b.connect(Some(&leaf), protocol, user, None).await;
            assert_eq!(c.connack, Some(0), "{protocol:?} {user:?}");
            assert!(c.publish("a.example/resources/s1/events").await, "{protocol:?} {user:?}");
            // It is that device and no other: another device's topic closes the connection.
            assert!(!c.publish("a.example/resources/s2/events").await, "{protocol:?} {user:?}");
        }
        // A username naming another device than the certificate is refused.
        let c = b.connect(Some(&leaf), protocol, Some("a.example/s2"), None).await;
        assert_eq!(c.connack, Some(if protocol == Protocol::V5 { 0x86 } else { 0x04 }), "{protocol:?}");
    }
    // The registry decides as for a password: a blocked device is banned.
    b.hub.set_blocked(&Domain::parse("a.example").unwrap(), &ResourceId::parse("s1").unwrap(), true).await.unwrap();
    assert_eq!(b.connect(Some(&leaf), Protocol::V5, None, None).await.connack, Some(0x8A));
}

#[tokio::test]
async fn one_tenants_ca_never_authenticates_another_tenants_devices() {
    let (ca_a, ca_b, shared) = (Ca::new("a devices"), Ca::new("b devices"), Ca::new("shared"));
    let cas = [
        ("a.example", &ca_a, None),
        ("b.example", &ca_b, None),
        ("a.example", &shared, None),
        ("c.example", &shared, None),
    ];
    let b = start(ClientAuth::Optional, &cas).await;
    for tenant in ["a.example", "b.example", "c.example"] {
        b.tenant(tenant);
    }
    let from_b = ca_b.issue("s1", 1);
    for user in ["a.example/s1", "c.example/s1"] {
        let c = b.connect(Some(&from_b), Protocol::V5, Some(user), None).await;
        assert_eq!(c.connack, Some(0x86), "b's certificate claiming {user}");
    }
    // Without a username it is b's device, and only b's.
    let mut c = b.connect(Some(&from_b), Protocol::V5, None, None).await;
    assert_eq!(c.connack, Some(0));
    assert!(c.publish("b.example/resources/s1/events").await);
    let mut c = b.connect(Some(&from_b), Protocol::V5, None, None).await;
    assert_eq!(c.connack, Some(0));
    assert!(!c.publish("a.example/resources/s1/events").await, "a's topics are not b's device's");

    // A CA two tenants registered names no tenant by itself: the username picks one of them.
    let from_shared = shared.issue("s1", 2);
    assert_eq!(b.connect(Some(&from_shared), Protocol::V5, None, None).await.connack, Some(0x86));
    assert_eq!(b.connect(Some(&from_shared), Protocol::V5, Some("b.example/s1"), None).await.connack, Some(0x86));
    for user in ["a.example/s1", "c.example/s1"] {
        let mut c = b.connect(Some(&from_shared), Protocol::V5, Some(user), None).await;
        assert_eq!(c.connack, Some(0), "{user}");
        assert!(c.publish(&format!("{}/resources/s1/events", &user[..9])).await, "{user}");
    }

    // A certificate from a CA no tenant registered fails the handshake.
    let stranger = Ca::new("stranger").issue("s1", 3);
    assert_eq!(b.connect(Some(&stranger), Protocol::V5, Some("a.example/s1"), None).await.connack, None);
}

#[tokio::test]
async fn a_revoked_certificate_is_refused() {
    let ca = Ca::new("a devices");
    let b = start(ClientAuth::Optional, &[("a.example", &ca, Some(ca.crl(&[66])))]).await;
    b.tenant("a.example");
    assert_eq!(b.connect(Some(&ca.issue("s1", 65)), Protocol::V5, None, None).await.connack, Some(0));
    assert_eq!(b.connect(Some(&ca.issue("s1", 66)), Protocol::V5, None, None).await.connack, None);
}

#[tokio::test]
async fn passwords_work_without_a_certificate_unless_one_is_required() {
    let ca = Ca::new("a devices");
    for (mode, expected) in [(ClientAuth::Optional, Some(0)), (ClientAuth::Required, None)] {
        let b = start(mode, &[("a.example", &ca, None)]).await;
        let p = b.tenant("a.example");
        let key = p.master_key.derive_device_key(&ResourceId::parse("s1").unwrap()).expose_base64();
        let mut c = b.connect(None, Protocol::V5, Some("a.example/s1"), Some(&key)).await;
        assert_eq!(c.connack, expected, "{mode:?}");
        if expected.is_some() {
            assert!(c.publish("a.example/resources/s1/events").await);
        }
        assert_eq!(b.connect(Some(&ca.issue("s1", 1)), Protocol::V5, None, None).await.connack, Some(0), "{mode:?}");
    }
}

#[tokio::test]
async fn replaced_ca_and_crl_files_take_effect_for_new_connections() {
    let (old, new) = (Ca::new("old"), Ca::new("new"));
    let b = start(ClientAuth::Optional, &[("a.example", &old, Some(old.crl(&[])))]).await;
    b.tenant("a.example");
    let (from_old, from_new) = (old.issue("s1", 1), new.issue("s1", 1));
    assert_eq!(b.connect(Some(&from_old), Protocol::V5, None, None).await.connack, Some(0));
    assert_eq!(b.connect(Some(&from_new), Protocol::V5, None, None).await.connack, None);

    // A CA file that does not parse keeps the previous CAs in service.
    replace(&b.ca_path(0, "pem"), "not a certificate");
    b.tls.reload_if_changed();
    assert_eq!(b.connect(Some(&from_old), Protocol::V5, None, None).await.connack, Some(0));

    replace(&b.ca_path(0, "pem"), &new.pem());
    replace(&b.ca_path(0, "crl"), &new.crl(&[]));
    b.tls.reload_if_changed();
    assert_eq!(b.connect(Some(&from_new), Protocol::V5, None, None).await.connack, Some(0));
    assert_eq!(b.connect(Some(&from_old), Protocol::V5, None, None).await.connack, None);

    // Revoking by a new CRL refuses the certificate from the next connection on.
    replace(&b.ca_path(0, "crl"), &new.crl(&[1]));
    b.tls.reload_if_changed();
    assert_eq!(b.connect(Some(&from_new), Protocol::V5, None, None).await.connack, None);
}

#[tokio::test]
async fn a_crl_that_revokes_a_live_connections_certificate_closes_it() {
    let ca = Ca::new("a devices");
    let b = start(ClientAuth::Optional, &[("a.example", &ca, Some(ca.crl(&[])))]).await;
    b.tenant("a.example");
    let (revoked, kept) = (ca.issue("s1", 1), ca.issue("s2", 2));
    let mut v5 = b.connect_as("v5", Some(&revoked), Protocol::V5, None, None).await;
    let mut v311 = b.connect_as("v311", Some(&revoked), Protocol::V311, None, None).await;
    let mut other = b.connect_as("other", Some(&kept), Protocol::V5, None, None).await;
    assert_eq!((v5.connack, v311.connack, other.connack), (Some(0), Some(0), Some(0)));
    assert!(b.tls.reload_if_changed().is_empty(), "nothing changed");

    replace(&b.ca_path(0, "crl"), &ca.crl(&[1]));
    let found = b.tls.reload_if_changed();
    let expected = Revoked { domain: Domain::parse("a.example").unwrap(), resource: ResourceId::parse("s1").unwrap() };
    assert_eq!(found, [expected], "one device, however many connections");
    for r in found {
        r.close(&b.broker).await;
    }
    assert!(matches!(v5.recv().await, Some(Packet::Disconnect(d)) if d.reason == 0x98), "administrative action");
    assert!(v311.recv().await.is_none(), "3.1.1 is closed");
    assert!(other.publish("a.example/resources/s2/events").await, "another certificate stays connected");
    assert_eq!(b.connect_as("again", Some(&revoked), Protocol::V5, None, None).await.connack, None);

    // A device found revoked once is not reported again.
    replace(&b.ca_path(0, "crl"), &ca.crl(&[1, 3]));
    assert!(b.tls.reload_if_changed().is_empty());
}
