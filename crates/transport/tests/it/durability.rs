//! What storage failures and restarts do to QoS 2 and acknowledgements: a received QoS 2 packet
//! id survives a restart, a failed commit is retried while nothing is acknowledged, and a dead
//! committer closes every connection and refuses new ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use switchyard_broker::{AnonymousAuth, BrokerConfig, StorageStatus};
use switchyard_codec::{Packet, Properties, Protocol, PubResp, Publish, QoS, reason};
use switchyard_storage::{MemoryStore, SessionOp, SessionStore, Snapshot, StorageError};
use tokio::sync::watch;

use crate::harness::{Client, TestBroker};

const WORKING: u8 = 0;
const FAILING: u8 = 1;
const PANICKING: u8 = 2;

/// A memory store whose commits fail, or panic, on demand; it counts the failures.
struct FlakyStore {
    inner: MemoryStore,
    mode: AtomicU8,
    failures: watch::Sender<usize>,
}

impl FlakyStore {
    fn new(inner: MemoryStore) -> Arc<FlakyStore> {
        Arc::new(FlakyStore { inner, mode: AtomicU8::new(WORKING), failures: watch::channel(0).0 })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Wait until at least `n` commits have failed.
    async fn failed(&self, n: usize) {
        self.failures.subscribe().wait_for(|f| *f >= n).await.unwrap();
    }
}

impl SessionStore for FlakyStore {
    fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError> {
        match self.mode.load(Ordering::SeqCst) {
            WORKING => self.inner.commit(ops),
            FAILING => {
                self.failures.send_modify(|f| *f += 1);
                Err(StorageError::Backend("disk on fire".into()))
            }
            _ => panic!("storage backend panicked (test)"),
        }
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        self.inner.load()
    }
}

fn anonymous() -> Arc<AnonymousAuth> {
    Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] })
}

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(3600), ..Properties::default() }
}

fn qos2(topic: &str, packet_id: u16, dup: bool) -> Packet {
    qos2_with(topic, packet_id, dup, b"{}")
}

fn qos2_with(topic: &str, packet_id: u16, dup: bool, payload: &'static [u8]) -> Packet {
    let payload = bytes::Bytes::from_static(payload);
    Packet::Publish(Publish {
        dup,
        qos: QoS::ExactlyOnce,
        topic: topic.into(),
        packet_id,
        payload,
        ..Publish::default()
    })
}

async fn expect_ack(client: &mut Client, what: &str, packet_id: u16) {
    let got = client.recv().await;
    let ok = match (&got, what) {
        (Some(Packet::PubRec(r)), "PUBREC") | (Some(Packet::PubComp(r)), "PUBCOMP") => r.packet_id == packet_id,
        (Some(Packet::PubAck(r)), "PUBACK") => r.packet_id == packet_id,
        _ => false,
    };
    assert!(ok, "expected {what} {packet_id}, got {got:?}");
}

/// Publish at QoS 2 and complete the exchange.
async fn publish_qos2(client: &mut Client, topic: &str, packet_id: u16, dup: bool) {
    client.send(&qos2(topic, packet_id, dup)).await;
    expect_ack(client, "PUBREC", packet_id).await;
    client.send(&Packet::PubRel(PubResp::new(packet_id))).await;
    expect_ack(client, "PUBCOMP", packet_id).await;
}

/// Receive one QoS 2 PUBLISH and complete the exchange; its topic.
async fn receive_qos2(client: &mut Client) -> String {
    let publish = client.next_publish_unacked().await.expect("a PUBLISH");
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    client.send(&Packet::PubRec(PubResp::new(publish.packet_id))).await;
    match client.recv().await {
        Some(Packet::PubRel(r)) if r.packet_id == publish.packet_id => {}
        other => panic!("expected PUBREL, got {other:?}"),
    }
    client.send(&Packet::PubComp(PubResp::new(publish.packet_id))).await;
    publish.topic
}

#[tokio::test]
async fn a_qos2_resend_after_a_restart_is_not_routed_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "sub", true, persistent()).await;
    assert_eq!(sub.subscribe("q/#", QoS::ExactlyOnce).await, [2]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "pub", true, persistent()).await;
    publisher.send(&qos2("q/1", 7, false)).await;
    expect_ack(&mut publisher, "PUBREC", 7).await;
    assert_eq!(receive_qos2(&mut sub).await, "q/1");
    // A round trip, so the PUBCOMP is applied before the stop closes the connection.
    assert_eq!(sub.subscribe("other", QoS::AtMostOnce).await, [0]);
    // The publisher never sent PUBREL: its PUBREC may have been lost, so it will resend.
    sub.send(&Packet::Disconnect(Default::default())).await;
    drop((sub, publisher));
    broker.stop().await;

    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut publisher, ack) = Client::connect(broker.addr, Protocol::V5, "pub", false, persistent()).await;
    assert!(ack.session_present);
    publish_qos2(&mut publisher, "q/1", 7, true).await;
    publish_qos2(&mut publisher, "q/2", 8, false).await;
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V5, "sub", false, persistent()).await;
    assert!(ack.session_present);
    assert_eq!(receive_qos2(&mut sub).await, "q/2", "the resend was not delivered a second time");
    broker.stop().await;
}

#[tokio::test]
async fn a_failed_commit_is_retried_and_nothing_is_acknowledged_until_it_lands() {
    let store = FlakyStore::new(MemoryStore::default());
    let broker = TestBroker::start_on(store.clone(), BrokerConfig::default(), anonymous()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "sub", true, persistent()).await;
    assert_eq!(sub.subscribe("t", QoS::ExactlyOnce).await, [2]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "pub", true, persistent()).await;

    store.set(FAILING);
    publisher.send(&qos2("t", 7, false)).await;
    store.failed(2).await;
    assert!(matches!(broker.broker.storage_status(), StorageStatus::Failing { .. }));
    // Nothing of the failing batch went out, and the publisher was not dropped.
    assert!(publisher.silent_for(Duration::from_millis(200)).await, "no PUBREC, no DISCONNECT");
    assert!(sub.silent_for(Duration::from_millis(50)).await, "no QoS 2 delivery before it is stored");

    store.set(WORKING);
    expect_ack(&mut publisher, "PUBREC", 7).await;
    assert_eq!(broker.broker.storage_status(), StorageStatus::Ok);
    assert_eq!(receive_qos2(&mut sub).await, "t");
    // A resend (its PUBREC lost) is acknowledged again and not routed.
    publish_qos2(&mut publisher, "t", 7, true).await;
    publisher.send(&qos2_with("t", 8, false, b"second")).await;
    expect_ack(&mut publisher, "PUBREC", 8).await;
    let next = sub.next_publish_unacked().await.expect("the next message");
    assert_eq!(&next.payload[..], b"second", "the second message, not the first again");
    broker.stop().await;
}

#[tokio::test]
async fn a_dead_committer_closes_every_connection_and_refuses_new_ones() {
    let store = FlakyStore::new(MemoryStore::default());
    let broker = TestBroker::start_on(store.clone(), BrokerConfig::default(), anonymous()).await;
    let (mut live, _) = Client::connect(broker.addr, Protocol::V5, "live", true, persistent()).await;
    let (mut old, _) = Client::connect(broker.addr, Protocol::V311, "old", true, Properties::default()).await;
    store.set(PANICKING);
    let retained = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "state".into(),
        packet_id: 1,
        payload: bytes::Bytes::from_static(b"on"),
        ..Publish::default()
    };
    live.send(&Packet::Publish(retained)).await;
    assert_eq!(live.closed_with().await, Some(reason::UNSPECIFIED_ERROR), "closed, never acknowledged");
    assert_eq!(old.closed_with().await, None);
    assert_eq!(broker.broker.storage_status(), StorageStatus::Dead);
    let (_, ack) = Client::connect(broker.addr, Protocol::V5, "late", true, Properties::default()).await;
    assert_eq!(ack.code, reason::SERVER_UNAVAILABLE);
    let (_, ack) = Client::connect(broker.addr, Protocol::V311, "late", true, Properties::default()).await;
    assert_eq!(ack.code, reason::v311::SERVER_UNAVAILABLE);
    broker.stop().await;
}
