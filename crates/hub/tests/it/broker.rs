//! The hub as a real broker's authenticator, over TCP on 127.0.0.1: CONNACK codes in 5.0 and
//! 3.1.1, topic rights, revocation closing live connections, and session ownership.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchyard_broker::{AnonymousAuth, Broker, BrokerConfig};
use switchyard_codec::{Connect, Packet, Properties, Protocol, Publish, QoS, SubOptions, Subscribe, SubscribeFilter};
use switchyard_hub::{Hub, HubConfig};
use switchyard_identity::{Domain, Provisioned, ResourceId};
use switchyard_storage::NullStore;
use switchyard_transport::ListenerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::memory_hub;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(config: HubConfig) -> Running {
    let (hub, _) = memory_hub(config);
    let stop = CancellationToken::new();
    let (broker, _router) =
        Broker::start(BrokerConfig::default(), Arc::new(NullStore), hub.clone(), stop.clone()).expect("broker starts");
    hub.attach(broker.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ListenerLimits { connect_timeout: WAIT, connections: Arc::new(Semaphore::new(100)) };
    tokio::spawn(switchyard_transport::run_listener(listener, None, broker, limits, TaskTracker::new(), stop.clone()));
    Running { addr, hub, stop }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    protocol: Protocol,
}

impl Client {
    /// Connects and returns the client with its CONNACK code.
    async fn connect(
        addr: SocketAddr,
        protocol: Protocol,
        id: &str,
        user: Option<&str>,
        pass: Option<&str>,
    ) -> (Client, u8) {
        Client::connect_from("127.0.0.1", addr, protocol, id, user, pass).await
    }

    /// [`Client::connect`] from a chosen loopback source address (any of 127.0.0.0/8).
    async fn connect_from(
        source: &str,
        addr: SocketAddr,
        protocol: Protocol,
        id: &str,
        user: Option<&str>,
        pass: Option<&str>,
    ) -> (Client, u8) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut client = Client { stream, buf: BytesMut::new(), protocol };
        let connect = Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: user.map(Into::into),
            password: pass.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            properties: Properties::default(),
        };
        client.send(&Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack.code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        switchyard_codec::encode(packet, self.protocol, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = switchyard_codec::decode(&mut self.buf, Some(self.protocol), usize::MAX).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads until the server closes; the DISCONNECT reason, if one came.
    async fn closed_with(&mut self) -> Option<u8> {
        let mut reason = None;
        while let Some(p) = self.recv().await {
            if let Packet::Disconnect(d) = p {
                reason = Some(d.reason);
            }
        }
        reason
    }

    async fn subscribe(&mut self, filter: &str) -> u8 {
        let options = SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() };
        let filters = vec![SubscribeFilter { filter: filter.into(), options }];
        self.send(&Packet::Subscribe(Subscribe { packet_id: 7, filters, properties: Properties::default() })).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => ack.reasons[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn publish(&mut self, topic: &str) {
        let publish = Publish { topic: topic.into(), payload: Bytes::from_static(b"{}"), ..Publish::default() };
        self.send(&Packet::Publish(publish)).await;
    }
}

fn device_key(p: &Provisioned, id: &str) -> String {
    p.master_key.derive_device_key(&ResourceId::parse(id).unwrap()).expose_base64()
}

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

const BOTH: [Protocol; 2] = [Protocol::V5, Protocol::V311];

#[tokio::test]
async fn connack_codes_in_both_versions() {
    let b = start(HubConfig::default()).await;
    let p = b.hub.registry().create_tenant(d("a.example")).unwrap();
    let off = b.hub.registry().create_tenant(d("off.example")).unwrap();
    b.hub.set_tenant_disabled(&d("off.example"), true).await.unwrap();
    b.hub.set_blocked(&d("a.example"), &ResourceId::parse("bad").unwrap(), true).await.unwrap();
    let good = device_key(&p, "s1");
    let cases: [(Option<&str>, Option<String>, u8, u8); 6] = [
        (Some("a.example/s1"), Some(good.clone()), 0x00, 0x00),
        (Some("a.example/s2"), Some(good.clone()), 0x86, 0x04),
        (Some("nobody.example/s1"), Some(good.clone()), 0x86, 0x04),
        (None, None, 0x87, 0x05),
        (Some("a.example/bad"), Some(device_key(&p, "bad")), 0x8A, 0x05),
        (Some("off.example/s1"), Some(device_key(&off, "s1")), 0x87, 0x05),
    ];
    for protocol in BOTH {
        for (user, pass, v5, v311) in &cases {
            let (_, code) = Client::connect(b.addr, protocol, "c", *user, pass.as_deref()).await;
            let expected = if protocol == Protocol::V5 { *v5 } else { *v311 };
            assert_eq!(code, expected, "{protocol:?} {user:?}");
        }
    }
}

#[tokio::test]
async fn failures_from_one_address_never_lock_a_device_out_of_another() {
    let b = start(HubConfig::default()).await;
    let p = b.hub.registry().create_tenant(d("a.example")).unwrap();
    let good = device_key(&p, "x");
    let bad = device_key(&p, "not-x");
    for i in 0..50 {
        let protocol = BOTH[i % 2];
        let (_, code) = Client::connect_from("127.0.0.1", b.addr, protocol, "x", Some("a.example/x"), Some(&bad)).await;
        assert!([0x86, 0x04, 0x9F, 0x03].contains(&code), "attempt {i}: {code:#x}");
    }
    for protocol in BOTH {
        // The device itself, from another address, is never affected ...
        let (_, code) =
            Client::connect_from("127.0.0.2", b.addr, protocol, "x", Some("a.example/x"), Some(&good)).await;
        assert_eq!(code, 0x00, "{protocol:?}");
        // ... while the address that failed is refused even with valid credentials.
        let (_, code) =
            Client::connect_from("127.0.0.1", b.addr, protocol, "x", Some("a.example/x"), Some(&good)).await;
        assert_eq!(code, if protocol == Protocol::V5 { 0x9F } else { 0x03 }, "{protocol:?}");
    }
}

#[tokio::test]
async fn devices_use_only_their_own_topics() {
    let b = start(HubConfig::default()).await;
    let p = b.hub.registry().create_tenant(d("a.example")).unwrap();
    b.hub.registry().create_tenant(d("b.example")).unwrap();
    let key = device_key(&p, "s1");
    for protocol in BOTH {
        let (mut c, code) = Client::connect(b.addr, protocol, "s1", Some("a.example/s1"), Some(&key)).await;
        assert_eq!(code, 0);
        let refused = if protocol == Protocol::V5 { 0x87 } else { 0x80 };
        assert_eq!(c.subscribe("a.example/resources/s1/commands").await, 1);
        for filter in [
            "a.example/resources/s1/events",
            "a.example/resources/s2/commands",
            "a.example/resources/+/commands",
            "a.example/#",
            "b.example/resources/s1/commands",
            "#",
            "$SYS/#",
        ] {
            assert_eq!(c.subscribe(filter).await, refused, "{protocol:?} {filter}");
        }
        c.publish("a.example/resources/s1/events").await;
        c.publish("a.example/resources/s2/events").await;
        let expected = (protocol == Protocol::V5).then_some(0x87);
        assert_eq!(c.closed_with().await, expected, "{protocol:?}");
    }
}

#[tokio::test]
async fn blocking_closes_the_live_connection_within_a_second() {
    let b = start(HubConfig::default()).await;
    let p = b.hub.registry().create_tenant(d("a")).unwrap();
    let key = device_key(&p, "dev");
    let (mut c, code) = Client::connect(b.addr, Protocol::V5, "dev", Some("a/dev"), Some(&key)).await;
    assert_eq!(code, 0);
    let (mut app, code) = Client::connect(
        b.addr,
        Protocol::V5,
        "app",
        Some(&format!("a/apikey/{}", p.api_key.id)),
        Some(&p.api_secret.expose_base64()),
    )
    .await;
    assert_eq!(code, 0);
    let started = tokio::time::Instant::now();
    b.hub.set_blocked(&d("a"), &ResourceId::parse("dev").unwrap(), true).await.unwrap();
    assert_eq!(c.closed_with().await, Some(0x98));
    assert!(started.elapsed() < Duration::from_secs(1));
    let (_, code) = Client::connect(b.addr, Protocol::V5, "dev", Some("a/dev"), Some(&key)).await;
    assert_eq!(code, 0x8A);
    // The application is untouched until its key is deleted.
    assert_eq!(app.subscribe("a/#").await, 1);
    b.hub.delete_api_key(&d("a"), &p.api_key.id).await.unwrap();
    assert_eq!(app.closed_with().await, Some(0x98));
}

#[tokio::test]
async fn another_identity_cannot_take_a_session_over() {
    let b = start(HubConfig::default()).await;
    let p = b.hub.registry().create_tenant(d("a")).unwrap();
    let (k1, k2) = (device_key(&p, "one"), device_key(&p, "two"));
    for (protocol, code) in [(Protocol::V5, 0x85), (Protocol::V311, 0x02)] {
        let (_first, ok) = Client::connect(b.addr, protocol, "shared", Some("a/one"), Some(&k1)).await;
        assert_eq!(ok, 0);
        let (_, refused) = Client::connect(b.addr, protocol, "shared", Some("a/two"), Some(&k2)).await;
        assert_eq!(refused, code, "{protocol:?}");
    }
}

#[tokio::test]
async fn applications_reach_devices_and_stay_in_their_tenant() {
    let b = start(HubConfig::default()).await;
    let a = b.hub.registry().create_tenant(d("a")).unwrap();
    let other = b.hub.registry().create_tenant(d("b")).unwrap();
    let (mut dev, _) = Client::connect(b.addr, Protocol::V5, "dev", Some("a/dev"), Some(&device_key(&a, "dev"))).await;
    assert_eq!(dev.subscribe("a/resources/dev/commands").await, 1);
    let app_user = format!("a/apikey/{}", a.api_key.id);
    let (mut app, _) =
        Client::connect(b.addr, Protocol::V5, "app", Some(&app_user), Some(&a.api_secret.expose_base64())).await;
    assert_eq!(app.subscribe("a/resources/+/events").await, 1);
    for filter in ["b/#", "#", "+/resources/dev/events"] {
        assert_eq!(app.subscribe(filter).await, 0x87, "{filter}");
    }
    app.publish("a/resources/dev/commands").await;
    match dev.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(p.topic, "a/resources/dev/commands"),
        other => panic!("expected the command, got {other:?}"),
    }
    // The other tenant's application, with the same relative topics, sees nothing of tenant a.
    let b_user = format!("b/apikey/{}", other.api_key.id);
    let (_b_app, code) =
        Client::connect(b.addr, Protocol::V5, "app", Some(&b_user), Some(&other.api_secret.expose_base64())).await;
    assert_eq!(code, 0, "same client id, other tenant: its own session");
    app.publish("b/resources/dev/commands").await;
    assert_eq!(app.closed_with().await, Some(0x87));
}

#[tokio::test]
async fn anonymous_mode_keeps_plain_mqtt_and_still_checks_tenant_usernames() {
    let config = HubConfig {
        anonymous: AnonymousAuth {
            allow_anonymous: true,
            deny: vec![switchyard_broker::DenyRule::Subscribe("test/nosubscribe".into())],
        },
        ..HubConfig::default()
    };
    let b = start(config).await;
    let p = b.hub.registry().create_tenant(d("a")).unwrap();
    let (mut anon, code) = Client::connect(b.addr, Protocol::V311, "anon", None, None).await;
    assert_eq!(code, 0);
    assert_eq!(anon.subscribe("test/nosubscribe").await, 0x80);
    assert_eq!(anon.subscribe("plain/#").await, 1);
    let (_, code) = Client::connect(b.addr, Protocol::V5, "plain-user", Some("alice"), Some("pw")).await;
    assert_eq!(code, 0, "a username without '/' is no tenant username");
    let (_, code) = Client::connect(b.addr, Protocol::V5, "x", Some("a/dev"), Some("wrong")).await;
    assert_eq!(code, 0x86, "a tenant username is checked, never downgraded to anonymous");
    let (_, code) = Client::connect(b.addr, Protocol::V5, "x", Some("a/dev"), Some(&device_key(&p, "dev"))).await;
    assert_eq!(code, 0);
    anon.publish("$SYS/broker/fake").await;
    assert_eq!(anon.closed_with().await, None, "3.1.1: closed without DISCONNECT");
}
