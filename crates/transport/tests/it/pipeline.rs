//! The pipeline hook on the MQTT path: data is normalized, stored before its PUBACK and
//! delivered as normalized; invalid data is answered with 0x99 under 5.0 and dropped under 3.1.1,
//! the connection kept either way.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchyard_broker::{AnonymousAuth, BrokerConfig, DataPath, Intake, IntakeHook, Principal};
use switchyard_codec::{Packet, Properties, Protocol, QoS, reason};
use switchyard_storage::data::{Block, SeriesInfo, StoredMessage, TimeRange, Written};
use switchyard_storage::{DataStore, Ingest, MemoryStore, MessageStore, ResourceKey, SeriesStore, StorageError};

use crate::harness::{Client, TestBroker};

/// Data is anything on `.../events` that starts with `{`; it is delivered wrapped in `[...]`.
struct Braces;

impl IntakeHook for Braces {
    fn intake(&self, _who: &Principal, topic: &str, payload: &Bytes, now_ms: u64) -> Intake {
        if !topic.ends_with("/events") {
            return Intake::Pass;
        }
        if !payload.starts_with(b"{") {
            return Intake::Refuse { reason: reason::PAYLOAD_FORMAT_INVALID, detail: "not an object\n".into() };
        }
        let normalized = Bytes::from([b"[", &payload[..], b"]"].concat());
        let record = Ingest {
            resource: ResourceKey { tenant: Arc::from(""), resource: Arc::from("d1") },
            ts: now_ms as i64,
            message_id: None,
            body: normalized.clone(),
            expires_at: None,
            keep: 100,
            points: Vec::new(),
            channel: switchyard_storage::data::Channel::Events,
            forward: true,
        };
        Intake::Store { payload: normalized, data: vec![record] }
    }
}

/// Keeps the bodies written.
#[derive(Default)]
struct Bodies(Mutex<Vec<Bytes>>);

impl MessageStore for Bodies {
    fn messages(&self, _: &ResourceKey, _: TimeRange, _: usize, _: i64) -> Result<Vec<StoredMessage>, StorageError> {
        Ok(Vec::new())
    }
    fn current(&self, _: &ResourceKey, _: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(None)
    }
    fn delete_messages(&self, _: &ResourceKey, _: TimeRange) -> Result<u64, StorageError> {
        Ok(0)
    }
}

impl SeriesStore for Bodies {
    fn series(&self, _: &ResourceKey, _: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        Ok(Vec::new())
    }
    fn scan(&self, _: &ResourceKey, _: &str, _: TimeRange, _: i64) -> Result<Vec<Block>, StorageError> {
        Ok(Vec::new())
    }
    fn delete_points(&self, _: &ResourceKey, _: TimeRange, _: Option<&[String]>) -> Result<u64, StorageError> {
        Ok(0)
    }
}

impl DataStore for Bodies {
    fn write(&self, batch: &[Ingest], _now: i64) -> Result<Vec<Written>, StorageError> {
        self.0.lock().unwrap().extend(batch.iter().map(|i| i.body.clone()));
        Ok(vec![Written::Stored { seq: 0 }; batch.len()])
    }
    fn drop_tenant(&self, _tenant: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn maintain(&self, _now: i64) -> Result<(), StorageError> {
        Ok(())
    }
}

async fn broker(bodies: &Arc<Bodies>) -> TestBroker {
    let data = DataPath { intake: Arc::new(Braces), store: Arc::clone(bodies) as Arc<dyn DataStore> };
    let auth = Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] });
    TestBroker::start_with_data(Arc::new(MemoryStore::default()), BrokerConfig::default(), auth, data).await
}

#[tokio::test]
async fn data_is_normalized_stored_before_its_puback_and_refused_with_0x99_under_5() {
    let bodies = Arc::new(Bodies::default());
    let broker = broker(&bodies).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "sub", true, Properties::default()).await;
    assert_eq!(sub.subscribe("d/+", QoS::AtLeastOnce).await, [1]);
    let (mut dev, _) = Client::connect(broker.addr, Protocol::V5, "dev", true, Properties::default()).await;

    dev.publish("d/events", QoS::AtLeastOnce, 1, br#"{"t":1}"#).await;
    match dev.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!((ack.packet_id, ack.reason), (1, reason::SUCCESS)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(*bodies.0.lock().unwrap(), [Bytes::from_static(br#"[{"t":1}]"#)], "stored when acknowledged");
    assert_eq!(&sub.next_publish().await.unwrap().payload[..], br#"[{"t":1}]"#, "delivered as normalized");

    dev.publish("d/events", QoS::AtLeastOnce, 2, b"nope").await;
    dev.publish("d/events", QoS::ExactlyOnce, 3, b"nope").await;
    dev.publish("d/events", QoS::AtMostOnce, 0, b"nope").await;
    dev.publish("d/other", QoS::AtLeastOnce, 4, b"plain bytes").await;
    match (dev.recv().await, dev.recv().await, dev.recv().await) {
        (Some(Packet::PubAck(a)), Some(Packet::PubRec(b)), Some(Packet::PubAck(c))) => {
            assert_eq!((a.packet_id, a.reason), (2, reason::PAYLOAD_FORMAT_INVALID));
            assert_eq!((b.packet_id, b.reason), (3, reason::PAYLOAD_FORMAT_INVALID));
            assert_eq!((c.packet_id, c.reason), (4, reason::SUCCESS), "not data: routed as it is");
        }
        other => panic!("expected PUBACK 0x99, PUBREC 0x99, PUBACK, got {other:?}"),
    }
    assert_eq!(&sub.next_publish().await.unwrap().payload[..], b"plain bytes", "the refused ones went nowhere");
    assert_eq!(bodies.0.lock().unwrap().len(), 1);
    assert_eq!(broker.broker.stats().data_refused.load(std::sync::atomic::Ordering::Relaxed), 3);
    broker.stop().await;
}

#[tokio::test]
async fn invalid_data_from_a_3_1_1_client_is_dropped_and_the_connection_kept() {
    let bodies = Arc::new(Bodies::default());
    let broker = broker(&bodies).await;
    let (mut dev, _) = Client::connect(broker.addr, Protocol::V311, "dev", true, Properties::default()).await;
    dev.publish("d/events", QoS::AtLeastOnce, 1, b"nope").await;
    match dev.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, 1, "acknowledged, so it is not resent for ever"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    dev.publish("d/events", QoS::AtLeastOnce, 2, b"{}").await;
    assert!(matches!(dev.recv().await, Some(Packet::PubAck(a)) if a.packet_id == 2), "still connected");
    assert_eq!(*bodies.0.lock().unwrap(), [Bytes::from_static(b"[{}]")]);
    broker.stop().await;
}
