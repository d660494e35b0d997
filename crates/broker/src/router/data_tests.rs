//! Pipeline data through the router and the real committer: stored before its acknowledgement
//! and only once however often the write or its sync is retried, never acknowledged before the
//! sync that covers it (while the next commit is written), refused data acknowledged per protocol,
//! data from outside MQTT delivered live and answered after its commit, a dropped namespace's
//! data deleted.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchyard_codec::{Packet, Properties, Protocol, Publish, QoS, SubOptions, Subscribe, SubscribeFilter, reason};
use switchyard_identity::Identity;
use switchyard_storage::data::{Block, SeriesInfo, StoredMessage, TimeRange, Written};
use switchyard_storage::{DataStore, Ingest, MemoryStore, MessageStore, ResourceKey, SeriesStore, StorageError};

use super::Router;
use crate::auth::{AnonymousAuth, Namespace, Principal};
use crate::config::BrokerConfig;
use crate::message::{ConnId, ConnectRequest, Event, IngestRequest};
use crate::outbox::{AckKind, Outbox, Outgoing};

/// Records what is written; fails the first `failures` writes (storing nothing, as a real
/// backend's atomic write would) and the first `sync_failures` syncs; a repeated `messageId` is
/// a duplicate. A write is durable (`stored`) once a sync that began after it returned.
#[derive(Default)]
struct Recording {
    stored: Mutex<Vec<Ingest>>,
    unsynced: Mutex<Vec<Ingest>>,
    dropped: Mutex<Vec<String>>,
    failures: AtomicUsize,
    sync_failures: AtomicUsize,
    gate: Option<Gate>,
}

/// What the committer did, in order.
#[derive(Debug, PartialEq)]
enum Step {
    Write,
    Sync,
}

/// Reports each step to the test; every sync then waits for the test's permit.
struct Gate {
    steps: Mutex<Sender<Step>>,
    permits: Mutex<Receiver<()>>,
}

impl Recording {
    fn step(&self, step: Step) {
        let Some(gate) = &self.gate else { return };
        let wait = step == Step::Sync;
        gate.steps.lock().unwrap().send(step).unwrap();
        if wait {
            gate.permits.lock().unwrap().recv().unwrap();
        }
    }
}

impl MessageStore for Recording {
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

impl SeriesStore for Recording {
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

impl DataStore for Recording {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        let written = self.write_unsynced(batch, now)?;
        self.sync()?;
        Ok(written)
    }
    fn write_unsynced(&self, batch: &[Ingest], _now: i64) -> Result<Vec<Written>, StorageError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::Backend("disk on fire".into()));
        }
        let stored = self.stored.lock().unwrap();
        let mut unsynced = self.unsynced.lock().unwrap();
        let mut written = Vec::new();
        for record in batch {
            let seen = record.message_id.is_some()
                && stored
                    .iter()
                    .chain(unsynced.iter())
                    .any(|s| s.resource == record.resource && s.message_id == record.message_id);
            if seen {
                written.push(Written::Duplicate);
            } else {
                unsynced.push(record.clone());
                written.push(Written::Stored { seq: (stored.len() + unsynced.len()) as u64 });
            }
        }
        drop((stored, unsynced));
        self.step(Step::Write);
        Ok(written)
    }
    fn sync(&self) -> Result<(), StorageError> {
        let covered = self.unsynced.lock().unwrap().len();
        self.step(Step::Sync);
        if self.sync_failures.load(Ordering::SeqCst) > 0 {
            self.sync_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::Backend("sync on fire".into()));
        }
        let synced: Vec<Ingest> = self.unsynced.lock().unwrap().drain(..covered).collect();
        self.stored.lock().unwrap().extend(synced);
        Ok(())
    }
    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        assert!(self.unsynced.lock().unwrap().is_empty(), "data is synced before a tenant is dropped");
        self.dropped.lock().unwrap().push(tenant.to_owned());
        self.stored.lock().unwrap().retain(|s| &*s.resource.tenant != tenant);
        Ok(())
    }
    fn maintain(&self, _now: i64) -> Result<(), StorageError> {
        Ok(())
    }
}

fn router(data: Arc<Recording>) -> Router {
    let auth = Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] });
    let store = Arc::new(MemoryStore::default());
    Router::new(Arc::new(BrokerConfig::default()), auth, store, data, Arc::default()).unwrap()
}

fn record(tenant: &str, body: &'static str, message_id: Option<&str>) -> Ingest {
    Ingest {
        resource: ResourceKey { tenant: Arc::from(tenant), resource: Arc::from("d1") },
        ts: 1_000,
        message_id: message_id.map(Arc::from),
        body: Bytes::from_static(body.as_bytes()),
        expires_at: None,
        keep: 100,
        points: Vec::new(),
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    }
}

/// Connect `client_id` in `ns` and wait for its CONNACK.
async fn connect(r: &mut Router, conn: ConnId, ns: &str, client_id: &str, protocol: Protocol) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let principal =
        Principal { namespace: Namespace::from_stored(ns), identity: Identity::Anonymous, owner: "o".into(), epoch: 0 };
    let connect = switchyard_codec::Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    r.handle(Event::Connect(Box::new(ConnectRequest {
        conn,
        principal,
        connect: Box::new(connect),
        client_id: Arc::from(client_id),
        outbox: Arc::clone(&outbox),
        connack_properties: Properties::default(),
        client_receive_maximum: 100,
        client_max_packet_size: u32::MAX,
    })));
    r.finish_batch().await;
    let first = next(&outbox).await;
    assert!(matches!(first, Outgoing::Control(p) if matches!(*p, Packet::ConnAck(_))));
    outbox
}

/// The next item the outbox receives, waiting for the committer.
async fn next(outbox: &Outbox) -> Outgoing {
    poll_fn(|cx| outbox.poll_ready(cx, true)).await;
    let mut items = Vec::new();
    outbox.drain(&mut items);
    assert_eq!(items.len(), 1, "{items:?}");
    items.pop().unwrap()
}

fn publish(qos: QoS, packet_id: u16, payload: &'static str) -> Box<Publish> {
    Box::new(Publish {
        qos,
        topic: "t.example/resources/d1/events".into(),
        packet_id,
        payload: Bytes::from_static(payload.as_bytes()),
        ..Publish::default()
    })
}

#[tokio::test]
async fn data_is_on_disk_before_its_acknowledgement_and_stored_once_across_retries() {
    let data = Arc::new(Recording::default());
    let mut r = router(Arc::clone(&data));
    let outbox = connect(&mut r, 1, "t.example", "d1", Protocol::V5).await;
    data.failures.store(2, Ordering::SeqCst);
    data.sync_failures.store(2, Ordering::SeqCst);
    let body = r#"{"t":1}"#;
    r.handle(Event::Publish {
        conn: 1,
        publish: publish(QoS::AtLeastOnce, 7, body),
        data: vec![record("t.example", body, None)],
    });
    r.finish_batch().await;
    let ack = next(&outbox).await;
    // No subscriber, but stored: a plain success, not 0x10.
    assert!(matches!(ack, Outgoing::Ack(AckKind::PubAck, 7, reason::SUCCESS)), "{ack:?}");
    assert_eq!(
        data.stored.lock().unwrap().len(),
        1,
        "on disk when acknowledged, once despite two failed writes and two failed syncs"
    );
    assert_eq!(r.stats.storage_errors.load(Ordering::Relaxed), 4);

    // QoS 0 data is stored too; a QoS 2 resend of an accepted packet id is not stored again.
    r.handle(Event::Publish {
        conn: 1,
        publish: publish(QoS::AtMostOnce, 0, body),
        data: vec![record("t.example", body, None)],
    });
    for _ in 0..2 {
        r.handle(Event::Publish {
            conn: 1,
            publish: publish(QoS::ExactlyOnce, 9, body),
            data: vec![record("t.example", body, None)],
        });
        r.finish_batch().await;
        assert!(matches!(next(&outbox).await, Outgoing::Ack(AckKind::PubRec, 9, reason::SUCCESS)));
    }
    assert_eq!(data.stored.lock().unwrap().len(), 3, "one QoS 1, one QoS 0, one QoS 2");
}

#[tokio::test]
async fn an_acknowledgement_waits_for_the_sync_that_covers_it_while_the_next_commit_is_written() {
    let (steps_tx, steps) = std::sync::mpsc::channel();
    let (permit, permits) = std::sync::mpsc::channel();
    let gate = Gate { steps: Mutex::new(steps_tx), permits: Mutex::new(permits) };
    let data = Arc::new(Recording { gate: Some(gate), ..Recording::default() });
    let mut r = router(Arc::clone(&data));
    let outbox = connect(&mut r, 1, "t.example", "d1", Protocol::V5).await;
    let body = r#"{"t":1}"#;
    let send = |r: &mut Router, packet_id| {
        let data = vec![record("t.example", body, None)];
        r.handle(Event::Publish { conn: 1, publish: publish(QoS::AtLeastOnce, packet_id, body), data });
    };
    send(&mut r, 1);
    r.finish_batch().await;
    assert_eq!(steps.recv().unwrap(), Step::Write);
    assert_eq!(steps.recv().unwrap(), Step::Sync, "the first commit syncs, held by the test");
    send(&mut r, 2);
    r.finish_batch().await;
    assert_eq!(steps.recv().unwrap(), Step::Write, "the next commit is written while the first syncs");
    assert!(outbox.is_empty(), "nothing is acknowledged before its sync returns");
    assert!(data.stored.lock().unwrap().is_empty());

    permit.send(()).unwrap();
    assert!(matches!(next(&outbox).await, Outgoing::Ack(AckKind::PubAck, 1, reason::SUCCESS)));
    assert_eq!(data.stored.lock().unwrap().len(), 1, "the first sync covers only what was written before it");
    assert_eq!(steps.recv().unwrap(), Step::Sync, "the second commit syncs on its own");
    assert!(outbox.is_empty(), "and its acknowledgement waits for it");
    permit.send(()).unwrap();
    assert!(matches!(next(&outbox).await, Outgoing::Ack(AckKind::PubAck, 2, reason::SUCCESS)));
    assert_eq!(data.stored.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn refused_data_is_acknowledged_with_its_reason_under_5_and_as_a_success_under_3_1_1() {
    let data = Arc::new(Recording::default());
    let mut r = router(Arc::clone(&data));
    let v5 = connect(&mut r, 1, "t.example", "five", Protocol::V5).await;
    let v311 = connect(&mut r, 2, "t.example", "three", Protocol::V311).await;
    let invalid = reason::PAYLOAD_FORMAT_INVALID;
    let detail = |d: &str| d.to_string();
    r.handle(Event::Refused {
        conn: 1,
        qos: QoS::AtLeastOnce,
        packet_id: 3,
        reason: invalid,
        detail: detail("x: bad\n\u{1}\u{fffe}"),
    });
    let long = "é".repeat(300);
    r.handle(Event::Refused { conn: 1, qos: QoS::ExactlyOnce, packet_id: 4, reason: invalid, detail: long });
    r.handle(Event::Refused { conn: 1, qos: QoS::AtLeastOnce, packet_id: 6, reason: invalid, detail: String::new() });
    r.handle(Event::Refused {
        conn: 2,
        qos: QoS::AtLeastOnce,
        packet_id: 5,
        reason: invalid,
        detail: detail("x: bad"),
    });
    r.finish_batch().await;
    let mut items = Vec::new();
    v5.drain(&mut items);
    v311.drain(&mut items);
    let acks: Vec<_> = items
        .into_iter()
        .map(|i| match i {
            Outgoing::Ack(kind, id, code) => (kind, id, code, None),
            Outgoing::Control(packet) => match *packet {
                Packet::PubAck(r) => (AckKind::PubAck, r.packet_id, r.reason, r.properties.reason_string),
                Packet::PubRec(r) => (AckKind::PubRec, r.packet_id, r.reason, r.properties.reason_string),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    let cut = "é".repeat(100); // 200 bytes
    assert_eq!(
        acks,
        [
            (AckKind::PubAck, 3, invalid, Some("x: bad\\n\\u{1}\\u{fffe}".to_string())),
            (AckKind::PubRec, 4, invalid, Some(cut)),
            (AckKind::PubAck, 6, invalid, None),
            (AckKind::PubAck, 5, 0, None),
        ],
        "5.0: the problem as reason string, with what MQTT forbids in one escaped; 3.1.1: a plain success"
    );
    let session = r.sessions.values().find(|s| &*s.client_id == "five").unwrap();
    assert!(session.rare.as_ref().is_none_or(|rare| !rare.incoming_qos2.contains(&4)), "the exchange ended");
    assert!(data.stored.lock().unwrap().is_empty());
}

#[tokio::test]
async fn ingested_data_goes_live_and_each_caller_hears_about_its_own_records_after_the_commit() {
    let data = Arc::new(Recording::default());
    let mut r = router(Arc::clone(&data));
    let sub = connect(&mut r, 1, "t.example", "app", Protocol::V5).await;
    let filter = SubscribeFilter {
        filter: "t.example/resources/+/events".into(),
        options: SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() },
    };
    let subscribe = Subscribe { packet_id: 1, filters: vec![filter], properties: Properties::default() };
    r.handle(Event::Subscribe { conn: 1, subscribe: Box::new(subscribe), allowed: vec![true] });
    r.finish_batch().await;
    assert!(matches!(next(&sub).await, Outgoing::Control(p) if matches!(*p, Packet::SubAck(_))));

    data.failures.store(1, Ordering::SeqCst);
    let mut answers = Vec::new();
    for (bodies, ids) in
        [(vec![r#"{"a":1}"#, r#"{"a":2}"#], [Some("m1"), None]), (vec![r#"{"b":1}"#, r#"{"b":2}"#], [None, Some("m1")])]
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let records = bodies.iter().zip(ids).map(|(b, id)| record("t.example", b, id)).collect();
        r.handle(Event::Ingest(Box::new(IngestRequest {
            namespace: Namespace::from_stored("t.example"),
            live: vec![(Arc::from("t.example/resources/d1/events"), Bytes::from_static(b"[live]"))],
            expires_at_ms: None,
            data: records,
            reply,
        })));
        answers.push(answer);
    }
    // Another namespace's subscribers never see it.
    let other = connect(&mut r, 2, "u.example", "app", Protocol::V5).await;
    r.finish_batch().await;
    let stored = |seq| Written::Stored { seq };
    assert_eq!(answers.remove(0).await.unwrap(), [stored(1), stored(2)]);
    assert_eq!(answers.remove(0).await.unwrap(), [stored(3), Written::Duplicate], "its own slice of the batch");
    assert_eq!(data.stored.lock().unwrap().len(), 3);
    let mut items = Vec::new();
    sub.drain(&mut items);
    assert_eq!(items.len(), 2, "both delivered live");
    assert!(items.iter().all(
        |i| matches!(i, Outgoing::Publish(d) if &d.message.payload[..] == b"[live]" && d.qos == QoS::AtLeastOnce)
    ));
    assert!(other.is_empty());
}

#[tokio::test]
async fn dropping_a_namespace_deletes_its_tenant_data_before_answering() {
    let data = Arc::new(Recording::default());
    let mut r = router(Arc::clone(&data));
    let (reply, _answer) = tokio::sync::oneshot::channel();
    let ns = Namespace::from_stored("t.example");
    let request = IngestRequest {
        namespace: ns.clone(),
        live: vec![],
        expires_at_ms: None,
        data: vec![record("t.example", "{}", None), record("u.example", "{}", None)],
        reply,
    };
    r.handle(Event::Ingest(Box::new(request)));
    let (done, durable) = tokio::sync::oneshot::channel();
    r.handle(Event::DropNamespace { namespace: ns, done });
    let (done, anonymous) = tokio::sync::oneshot::channel();
    r.handle(Event::DropNamespace { namespace: Namespace::anonymous(), done });
    r.finish_batch().await;
    durable.await.unwrap();
    anonymous.await.unwrap();
    assert_eq!(*data.dropped.lock().unwrap(), ["t.example"], "no tenant is named after the anonymous namespace");
    let left: Vec<_> = data.stored.lock().unwrap().iter().map(|s| s.resource.tenant.to_string()).collect();
    assert_eq!(left, ["u.example"]);
}

#[test]
fn events_stay_small() {
    assert!(size_of::<Event>() <= 48, "{}", size_of::<Event>());
}

#[tokio::test]
async fn listeners_hear_what_a_commit_stored_before_its_answer() {
    use crate::listen::{Heard, Scope};
    use switchyard_storage::data::Channel;

    let data = Arc::new(Recording::default());
    let mut r = router(Arc::clone(&data));
    let resource = ResourceKey { tenant: Arc::from("t.example"), resource: Arc::from("d1") };
    let mut events = r.listeners().listen(Scope::Resource { resource: resource.clone(), channel: Channel::Events }, 8);
    let mut commands = r.listeners().listen(Scope::Resource { resource, channel: Channel::Commands }, 8);
    let mut firehose = r.listeners().listen(Scope::Tenant(Arc::from("t.example")), 8);
    let mut other = r.listeners().listen(Scope::Tenant(Arc::from("u.example")), 8);
    let command = Ingest { channel: Channel::Commands, ..record("t.example", "{\"c\":1}", None) };
    let records =
        vec![record("t.example", "{\"a\":1}", Some("m1")), record("t.example", "{\"a\":1}", Some("m1")), command];
    let (reply, answer) = tokio::sync::oneshot::channel();
    r.handle(Event::Ingest(Box::new(IngestRequest {
        namespace: Namespace::from_stored("t.example"),
        live: vec![],
        expires_at_ms: None,
        data: records,
        reply,
    })));
    r.finish_batch().await;
    answer.await.unwrap();
    let heard = |l: &mut crate::listen::Listener| {
        std::iter::from_fn(|| l.try_recv().unwrap())
            .map(|h| match h {
                Heard::Message(m) => (m.seq, m.channel, m.body.clone()),
                Heard::Missed(n) => panic!("missed {n}"),
            })
            .collect::<Vec<_>>()
    };
    let event = (1, Channel::Events, Bytes::from_static(b"{\"a\":1}"));
    let command = (2, Channel::Commands, Bytes::from_static(b"{\"c\":1}"));
    assert_eq!(heard(&mut events), std::slice::from_ref(&event), "the duplicate is not heard");
    assert_eq!(heard(&mut commands), std::slice::from_ref(&command));
    assert_eq!(heard(&mut firehose), [event, command]);
    assert!(heard(&mut other).is_empty());
    drop(other);
    assert_eq!(r.listeners().count(), 3, "a dropped listener unregisters");

    let (done, durable) = tokio::sync::oneshot::channel();
    r.handle(Event::DropNamespace { namespace: Namespace::from_stored("t.example"), done });
    r.finish_batch().await;
    durable.await.unwrap();
    assert!(events.recv().await.is_none(), "a deleted tenant's listeners end");
}
