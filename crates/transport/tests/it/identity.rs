//! The core's side of identity: sessions belong to their owner, namespaces isolate tenants, and
//! an administrative kick closes exactly the connections it names. A test authenticator maps a
//! username `domain/resource` to a device identity, and no username to an anonymous one.

use std::sync::Arc;

use switchyard_broker::auth::{AuthFuture, ConnectCredentials};
use switchyard_broker::{Authenticator, BrokerConfig, Namespace, Principal, owner_key};
use switchyard_codec::{Properties, Protocol, QoS, reason};
use switchyard_identity::{DeviceIdentity, Domain, Identity, ResourceId};

use crate::harness::{Client, TestBroker, WAIT};

struct UsernameAuth;

fn device(username: &str) -> Identity {
    let (domain, resource) = username.split_once('/').expect("domain/resource");
    Identity::Device(DeviceIdentity {
        domain: Domain::parse(domain).unwrap(),
        resource: ResourceId::parse(resource).unwrap(),
    })
}

impl Authenticator for UsernameAuth {
    fn authenticate<'a>(&'a self, creds: ConnectCredentials<'a>) -> AuthFuture<'a> {
        let identity = creds.username.map_or(Identity::Anonymous, device);
        Box::pin(std::future::ready(Ok(Principal::new(identity))))
    }
    fn may_publish(&self, _who: &Principal, _topic: &str) -> bool {
        true
    }
    fn may_subscribe(&self, _who: &Principal, _filter: &str) -> bool {
        true
    }
}

async fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, BrokerConfig::default(), Arc::new(UsernameAuth)).await
}

#[tokio::test]
async fn another_identity_cannot_take_a_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let (_owner, ack) = Client::connect_as(broker.addr, Protocol::V5, "shared-id", "t.example/d1").await;
    assert_eq!(ack.code, 0);
    let (mut thief, ack) = Client::connect_as(broker.addr, Protocol::V5, "shared-id", "t.example/d2").await;
    assert_eq!(ack.code, reason::CLIENT_IDENTIFIER_NOT_VALID);
    let started = std::time::Instant::now();
    assert_eq!(thief.closed_with().await, None, "no DISCONNECT after a refusing CONNACK");
    assert!(started.elapsed() < WAIT, "the refused connection is closed by the server");
    let (_thief, ack) = Client::connect_as(broker.addr, Protocol::V311, "shared-id", "t.example/d2").await;
    assert_eq!(ack.code, reason::v311::IDENTIFIER_REJECTED);
    // The same client id in another tenant is another session altogether.
    let (_other, ack) = Client::connect_as(broker.addr, Protocol::V5, "shared-id", "u.example/d2").await;
    assert_eq!(ack.code, 0);
    broker.stop().await;
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let (mut anon, _) = Client::connect(broker.addr, Protocol::V5, "anon", true, Properties::default()).await;
    assert_eq!(anon.subscribe("#", QoS::AtMostOnce).await, [0]);
    let (mut other, _) = Client::connect_as(broker.addr, Protocol::V5, "o", "u.example/watcher").await;
    assert_eq!(other.subscribe("#", QoS::AtMostOnce).await, [0]);
    let (mut mate, _) = Client::connect_as(broker.addr, Protocol::V5, "m", "t.example/watcher").await;
    assert_eq!(mate.subscribe("#", QoS::AtMostOnce).await, [0]);
    let (mut device, _) = Client::connect_as(broker.addr, Protocol::V5, "d", "t.example/d1").await;
    device.publish("t.example/resources/d1/events", QoS::AtMostOnce, 0, b"{}").await;
    let got = mate.next_publish().await.expect("same tenant receives");
    assert_eq!(got.topic, "t.example/resources/d1/events");
    let silence = std::time::Duration::from_millis(300);
    assert!(anon.recv_within(silence).await.is_none(), "anonymous namespace sees nothing of a tenant");
    assert!(other.recv_within(silence).await.is_none(), "another tenant sees nothing");
    broker.stop().await;
}

#[tokio::test]
async fn kick_closes_only_the_named_owner() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let (mut d1, _) = Client::connect_as(broker.addr, Protocol::V5, "c1", "t.example/d1").await;
    let (mut d2, _) = Client::connect_as(broker.addr, Protocol::V5, "c2", "t.example/d2").await;
    let ns = Namespace::tenant(&Domain::parse("t.example").unwrap());
    broker.broker.kick(ns, Some(owner_key(&device("t.example/d1")))).await.unwrap();
    assert_eq!(d1.closed_with().await, Some(reason::ADMINISTRATIVE_ACTION));
    assert_eq!(d2.subscribe("t.example/x", QoS::AtMostOnce).await, [0], "d2 unaffected");
    broker.stop().await;
}

#[tokio::test]
async fn sys_topics_are_per_namespace_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { sys_interval_ms: 100, ..BrokerConfig::default() };
    let broker = TestBroker::start_with(dir.path(), config, Arc::new(UsernameAuth)).await;
    let (mut tenant, _) = Client::connect_as(broker.addr, Protocol::V5, "t", "t.example/app").await;
    let (_peer, _) = Client::connect_as(broker.addr, Protocol::V5, "t2", "t.example/d2").await;
    let (_other, _) = Client::connect_as(broker.addr, Protocol::V5, "o", "u.example/d3").await;
    assert_eq!(tenant.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce).await, [0]);
    let p = tenant.next_publish().await.expect("$SYS figure arrives");
    assert_eq!(&p.payload[..], b"2", "counts only this tenant's two clients");
    // `#` does not match `$SYS`, and nobody may publish there.
    let (mut anon, _) = Client::connect(broker.addr, Protocol::V5, "a", true, Properties::default()).await;
    anon.publish("$SYS/broker/uptime", QoS::AtMostOnce, 0, b"forged").await;
    assert_eq!(anon.closed_with().await, Some(reason::NOT_AUTHORIZED));
    broker.stop().await;
}

/// The first non-zero `$SYS/broker/messages/received` figure `client` (subscribed to it) sees.
async fn first_received_count(client: &mut Client) -> String {
    for _ in 0..100 {
        let p = client.next_publish().await.expect("$SYS figures keep coming");
        if &p.payload[..] != b"0" {
            return String::from_utf8_lossy(&p.payload).into_owned();
        }
    }
    panic!("the count never moved");
}

#[tokio::test]
async fn sys_message_counts_are_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { sys_interval_ms: 100, ..BrokerConfig::default() };
    let broker = TestBroker::start_with(dir.path(), config, Arc::new(UsernameAuth)).await;
    let (mut anon, _) = Client::connect(broker.addr, Protocol::V5, "a", true, Properties::default()).await;
    assert_eq!(anon.subscribe("$SYS/broker/messages/received", QoS::AtMostOnce).await, [0]);
    let (mut tenant, _) = Client::connect_as(broker.addr, Protocol::V5, "t", "t.example/app").await;
    assert_eq!(tenant.subscribe("t.example/x", QoS::AtMostOnce).await, [0]);
    for _ in 0..3 {
        tenant.publish("t.example/x", QoS::AtMostOnce, 0, b"{}").await;
        assert_eq!(tenant.next_publish().await.expect("own message").topic, "t.example/x");
    }
    anon.publish("a/b", QoS::AtMostOnce, 0, b"{}").await;
    assert_eq!(first_received_count(&mut anon).await, "1", "the anonymous namespace counts only its own");
    assert_eq!(tenant.subscribe("$SYS/broker/messages/received", QoS::AtMostOnce).await, [0]);
    assert_eq!(first_received_count(&mut tenant).await, "3", "a tenant sees its own count");
    broker.stop().await;
}

#[tokio::test]
async fn shared_groups_of_two_tenants_rotate_independently() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut members = Vec::new();
    for (id, user) in [("t1", "t.example/m1"), ("t2", "t.example/m2"), ("u1", "u.example/m1"), ("u2", "u.example/m2")] {
        let (mut member, _) = Client::connect_as(broker.addr, Protocol::V5, id, user).await;
        assert_eq!(member.subscribe("$share/g/x", QoS::AtMostOnce).await, [0]);
        members.push(member);
    }
    let (mut t_pub, _) = Client::connect_as(broker.addr, Protocol::V5, "tp", "t.example/p").await;
    let (mut u_pub, _) = Client::connect_as(broker.addr, Protocol::V5, "up", "u.example/p").await;
    t_pub.publish("x", QoS::AtMostOnce, 0, b"{}").await;
    u_pub.publish("x", QoS::AtMostOnce, 0, b"{}").await;
    t_pub.publish("x", QoS::AtMostOnce, 0, b"{}").await;
    // Another tenant's publish between them does not move this tenant's round robin.
    assert!(members[0].next_publish().await.is_some(), "t1 gets one");
    assert!(members[1].next_publish().await.is_some(), "t2 gets the other");
    broker.stop().await;
}

#[tokio::test]
async fn wide_anonymous_filters_are_granted_but_denied_topics_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V311, "wide", true, Properties::default()).await;
    assert_eq!(sub.subscribe("test/nosubscribe", QoS::AtMostOnce).await, [reason::v311::SUBACK_FAILURE]);
    assert_eq!(sub.subscribe("#", QoS::AtMostOnce).await, [0]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "p", true, Properties::default()).await;
    publisher.publish("test/nosubscribe", QoS::AtMostOnce, 0, b"secret").await;
    publisher.publish("test/open", QoS::AtMostOnce, 0, b"fine").await;
    let got = sub.next_publish().await.expect("the open topic arrives");
    assert_eq!(got.topic, "test/open", "the denied topic was withheld");
    broker.stop().await;
}
