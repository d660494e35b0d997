//! Session lifetime on the router itself, without sockets: timers stay one per session however
//! often a client reconnects, persistent sessions are capped per identity, 3.1.1 sessions expire,
//! dropping a namespace leaves nothing of it, and a SUBSCRIBE writes only its subscriptions.

use std::sync::Arc;

use switchyard_codec::{
    ConnAck, Connect, Packet, Properties, Protocol, Publish, QoS, SubOptions, Subscribe, SubscribeFilter, Unsubscribe,
    Will, reason,
};
use switchyard_identity::Identity;
use switchyard_storage::{MemoryStore, SessionOp, SessionStore};

use super::{Router, Timer};
use crate::auth::{AnonymousAuth, Namespace, Principal};
use crate::config::BrokerConfig;
use crate::message::{ConnId, ConnectRequest, Event, WillAction, now_ms};
use crate::outbox::{Outbox, Outgoing};

fn router(cfg: BrokerConfig, store: Arc<dyn SessionStore>) -> Router {
    let auth = Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] });
    Router::new(Arc::new(cfg), auth, store, Arc::new(crate::intake::NoData), Arc::default()).unwrap()
}

fn principal(ns: &str, owner: &str) -> Principal {
    Principal {
        namespace: Namespace::from_stored(ns),
        identity: Identity::Anonymous,
        owner: Arc::from(owner),
        epoch: 0,
    }
}

struct Conn {
    id: ConnId,
    outbox: Arc<Outbox>,
}

/// Send a CONNECT and apply it; `expiry` is the 5.0 session expiry (3.1.1: persistent if > 0).
fn connect(r: &mut Router, conn: ConnId, who: &Principal, client_id: &str, protocol: Protocol, expiry: u32) -> Conn {
    connect_with(r, conn, who, client_id, protocol, expiry, None)
}

fn connect_with(
    r: &mut Router,
    conn: ConnId,
    who: &Principal,
    client_id: &str,
    protocol: Protocol,
    expiry: u32,
    will: Option<Will>,
) -> Conn {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let properties = Properties { session_expiry_interval: Some(expiry), ..Properties::default() };
    let connect = Connect {
        protocol,
        clean_start: protocol == Protocol::V311 && expiry == 0,
        keep_alive: 60,
        client_id: client_id.into(),
        will,
        username: None,
        password: None,
        properties: if protocol == Protocol::V5 { properties } else { Properties::default() },
    };
    r.handle(Event::Connect(Box::new(ConnectRequest {
        conn,
        principal: who.clone(),
        connect: Box::new(connect),
        client_id: Arc::from(client_id),
        outbox: Arc::clone(&outbox),
        connack_properties: Properties::default(),
        client_receive_maximum: 100,
        client_max_packet_size: u32::MAX,
    })));
    Conn { id: conn, outbox }
}

/// Release what the router holds, as a successful commit would, and take its ops.
fn commit(r: &mut Router) {
    for (outbox, item) in r.held.drain(..) {
        outbox.push_held(item);
    }
    r.ops.clear();
}

fn connack(r: &mut Router, c: &Conn) -> ConnAck {
    commit(r);
    let mut items = Vec::new();
    c.outbox.drain(&mut items);
    items
        .into_iter()
        .find_map(|item| match item {
            Outgoing::Control(packet) => match *packet {
                Packet::ConnAck(ack) => Some(ack),
                _ => None,
            },
            _ => None,
        })
        .expect("a CONNACK")
}

fn gone(r: &mut Router, c: &Conn) {
    r.handle(Event::Disconnected { conn: c.id, will: WillAction::Publish, session_expiry: None });
}

#[test]
fn reconnects_leave_one_timer_per_session_and_kind() {
    let mut r = router(BrokerConfig::default(), Arc::new(MemoryStore::default()));
    let who = principal("", "");
    let will = Will {
        topic: "w".into(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties { will_delay_interval: Some(600), ..Properties::default() },
    };
    for conn in 1..=1_000 {
        let c = connect_with(&mut r, conn, &who, "flappy", Protocol::V5, 3600, Some(will.clone()));
        gone(&mut r, &c);
        commit(&mut r);
    }
    let kinds: Vec<_> = r.timers.iter().filter(|(_, t)| !matches!(t, Timer::Sys | Timer::KeepAlive)).collect();
    assert_eq!(kinds.len(), 2, "one expiry and one will timer, not one per disconnect: {kinds:?}");
    assert_eq!(r.timer_due.len(), r.timers.len());
    // Attached again, the session has no timer at all; ended, neither.
    let c = connect(&mut r, 5_000, &who, "flappy", Protocol::V5, 3600);
    assert!(r.timers.is_empty(), "{:?}", r.timers);
    r.handle(Event::Disconnected { conn: c.id, will: WillAction::Discard, session_expiry: Some(0) });
    assert!(r.timers.is_empty() && r.timer_due.is_empty());
}

#[test]
fn v311_persistent_sessions_expire_after_max_session_expiry() {
    let mut r = router(BrokerConfig::default(), Arc::new(MemoryStore::default()));
    let c = connect(&mut r, 1, &principal("", ""), "old", Protocol::V311, 1);
    assert_eq!(connack(&mut r, &c).code, 0);
    gone(&mut r, &c);
    let due = r.timer_due.iter().find(|(t, _)| matches!(t, Timer::SessionExpiry(_))).map(|(_, due)| *due);
    let due = due.expect("an expiry timer");
    // Against the router's own clock (read once per batch), not the test's.
    assert_eq!(due, r.now + 604_800_000, "expires 7 days (SPEC default) after it went offline");
}

#[test]
fn persistent_sessions_per_identity_are_capped() {
    let cfg = BrokerConfig { max_sessions_per_identity: 2, ..BrokerConfig::default() };
    let mut r = router(cfg, Arc::new(MemoryStore::default()));
    let device = principal("a.example", "device:d1");
    let other = principal("a.example", "device:d2");
    for (conn, id) in [(1, "one"), (2, "two")] {
        let c = connect(&mut r, conn, &device, id, Protocol::V5, 3600);
        assert_eq!(connack(&mut r, &c).code, 0, "{id}");
    }
    let c = connect(&mut r, 3, &device, "three", Protocol::V5, 3600);
    assert_eq!(connack(&mut r, &c).code, reason::QUOTA_EXCEEDED);
    let c = connect(&mut r, 4, &device, "three", Protocol::V311, 1);
    assert_eq!(connack(&mut r, &c).code, reason::v311::SERVER_UNAVAILABLE);
    // A session that does not outlive its connection, another identity, anonymous clients and
    // resuming an existing session are all fine.
    let c = connect(&mut r, 5, &device, "three", Protocol::V5, 0);
    assert_eq!(connack(&mut r, &c).code, 0);
    gone(&mut r, &c);
    let c = connect(&mut r, 6, &other, "three", Protocol::V5, 3600);
    assert_eq!(connack(&mut r, &c).code, 0);
    for conn in 7..10 {
        let c = connect(&mut r, conn, &principal("", ""), &format!("anon{conn}"), Protocol::V5, 3600);
        assert_eq!(connack(&mut r, &c).code, 0);
    }
    let c = connect(&mut r, 10, &device, "one", Protocol::V5, 3600);
    let ack = connack(&mut r, &c);
    assert_eq!((ack.code, ack.session_present), (0, true));
    // Once one ends (expiry 0 at DISCONNECT), there is room again.
    r.handle(Event::Disconnected { conn: 10, will: WillAction::Discard, session_expiry: Some(0) });
    let c = connect(&mut r, 11, &device, "four", Protocol::V5, 3600);
    assert_eq!(connack(&mut r, &c).code, 0);
}

#[tokio::test]
async fn dropping_a_namespace_leaves_nothing_of_it() {
    let store = MemoryStore::default();
    let mut r = router(BrokerConfig::default(), Arc::new(store.clone()));
    let dev = principal("a.example", "device:d1");
    let keep = principal("b.example", "device:d1");
    let c = connect(&mut r, 1, &dev, "d1", Protocol::V5, 3600);
    let kept = connect(&mut r, 2, &keep, "d1", Protocol::V5, 3600);
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/state".into(),
        packet_id: 1,
        payload: bytes::Bytes::from_static(b"on"),
        ..Publish::default()
    };
    r.handle(Event::Publish { conn: c.id, publish: Box::new(publish.clone()), data: Vec::new() });
    r.handle(Event::Publish { conn: kept.id, publish: Box::new(publish), data: Vec::new() });
    gone(&mut r, &c);
    r.finish_batch().await;
    let (done, durable) = tokio::sync::oneshot::channel();
    r.handle(Event::DropNamespace { namespace: Namespace::from_stored("a.example"), done });
    r.finish_batch().await;
    durable.await.expect("told once durable");
    assert!(r.sessions.values().all(|s| s.namespace.as_str() == "b.example"));
    assert!(!r.spaces.contains_key(&Namespace::from_stored("a.example")));
    assert!(r.timers.iter().all(|(_, t)| matches!(t, Timer::Sys | Timer::KeepAlive)));
    assert!(r.persistent_owned.keys().all(|(ns, _)| ns.as_str() == "b.example"));
    let snapshot = store.load().unwrap();
    let sessions: Vec<_> = snapshot.sessions.iter().map(|s| s.session.as_str()).collect();
    let retained: Vec<_> = snapshot.retained.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!((sessions, retained), (vec!["9:b.example/d1"], vec!["9:b.example/a/state"]));
}

/// Wait until everything the router handed to storage is there. The only event that reports
/// durability is dropping a namespace: one that holds nothing will do.
async fn durable(r: &mut Router) {
    r.finish_batch().await;
    let (done, durable) = tokio::sync::oneshot::channel();
    r.handle(Event::DropNamespace { namespace: Namespace::from_stored("unused"), done });
    r.finish_batch().await;
    durable.await.unwrap();
}

fn subscribe(r: &mut Router, c: &Conn, filters: &[&str]) {
    let options = SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() };
    let filters: Vec<_> = filters.iter().map(|f| SubscribeFilter { filter: f.to_string(), options }).collect();
    let allowed = vec![true; filters.len()];
    let subscribe = Subscribe { packet_id: 1, filters, properties: Properties::default() };
    r.handle(Event::Subscribe { conn: c.id, subscribe: Box::new(subscribe), allowed });
}

#[tokio::test]
async fn a_subscribe_writes_only_the_subscriptions_it_changes() {
    let store = MemoryStore::default();
    let mut r = router(BrokerConfig::default(), Arc::new(store.clone()));
    let c = connect(&mut r, 1, &principal("", ""), "many", Protocol::V5, 3600);
    let many: Vec<String> = (0..100).map(|i| format!("sensor/{i}/#")).collect();
    subscribe(&mut r, &c, &many.iter().map(String::as_str).collect::<Vec<_>>());
    r.finish_batch().await;

    subscribe(&mut r, &c, &["one/more"]);
    let unsubscribe =
        Unsubscribe { packet_id: 2, filters: vec!["sensor/7/#".into()], properties: Properties::default() };
    r.handle(Event::Unsubscribe { conn: c.id, unsubscribe: Box::new(unsubscribe) });
    assert!(r.dirty.is_empty(), "the session record is not rewritten");
    let names: Vec<_> = r
        .ops
        .iter()
        .map(|op| match op {
            SessionOp::PutEntry { name, .. } => format!("put {name}"),
            SessionOp::DeleteEntry { name, .. } => format!("delete {name}"),
            other => panic!("only subscription entries are written, not {other:?}"),
        })
        .collect();
    assert_eq!(names, ["put s/one/more", "delete s/sensor/7/#"]);
    gone(&mut r, &c);
    r.finish_batch().await;
    durable(&mut r).await;

    // A restart brings every subscription back from its entry.
    let mut again = router(BrokerConfig::default(), Arc::new(store.clone()));
    again.restore(store.load().unwrap());
    let restored = &again.sessions.values().next().expect("the session").subscriptions;
    assert_eq!(restored.len(), 100);
    assert!(restored.contains_key("one/more") && !restored.contains_key("sensor/7/#"));
}

#[tokio::test]
async fn subscriptions_stored_inside_an_old_record_move_to_entries() {
    let store = MemoryStore::default();
    let old = serde_json::json!({
        "namespace": "", "client_id": "old", "owner": "", "protocol": 5, "expiry": 3600,
        "subscriptions": {"a/#": {"qos": 1, "no_local": false, "retain_as_published": false, "retain_handling": 0, "id": null}},
        "offline_since_ms": now_ms(),
    });
    let record = serde_json::to_vec(&old).unwrap().into();
    store.commit(&[SessionOp::PutSession { session: "0:/old".into(), record }]).unwrap();
    let mut r = router(BrokerConfig::default(), Arc::new(store.clone()));
    r.restore(store.load().unwrap());
    r.finish_batch().await;
    durable(&mut r).await;
    let snapshot = store.load().unwrap();
    let session = &snapshot.sessions[0];
    assert!(!String::from_utf8_lossy(&session.record).contains("a/#"), "record rewritten without them");
    assert_eq!(session.entries.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["s/a/#"]);
    let mut again = router(BrokerConfig::default(), Arc::new(store.clone()));
    again.restore(snapshot);
    assert!(again.sessions.values().next().unwrap().subscriptions.contains_key("a/#"));
}

/// Admits everyone but considers principals of epoch 1 revoked, as the hub does for a tenant
/// deleted after they authenticated.
struct RevokesEpochOne;

impl crate::auth::Authenticator for RevokesEpochOne {
    fn authenticate<'a>(&'a self, _creds: crate::auth::ConnectCredentials<'a>) -> crate::auth::AuthFuture<'a> {
        Box::pin(async { Ok(Principal::new(Identity::Anonymous)) })
    }
    fn still_valid(&self, who: &Principal) -> bool {
        who.epoch != 1
    }
    fn may_publish(&self, _who: &Principal, _topic: &str) -> bool {
        true
    }
    fn may_subscribe(&self, _who: &Principal, _filter: &str) -> bool {
        true
    }
}

#[test]
fn credentials_revoked_after_authentication_are_refused_at_attach() {
    let mut r = Router::new(
        Arc::new(BrokerConfig::default()),
        Arc::new(RevokesEpochOne),
        Arc::new(MemoryStore::default()),
        Arc::new(crate::intake::NoData),
        Arc::default(),
    )
    .unwrap();
    let revoked = principal("t", "device:a").with_epoch(1);
    for (conn, protocol, code) in
        [(1, Protocol::V5, reason::NOT_AUTHORIZED), (2, Protocol::V311, reason::v311::NOT_AUTHORIZED)]
    {
        let c = connect(&mut r, conn, &revoked, "a", protocol, 3600);
        assert_eq!(connack(&mut r, &c).code, code);
    }
    assert!(r.sessions.is_empty(), "no session was made for a revoked principal");
    let current = principal("t", "device:a").with_epoch(2);
    let c = connect(&mut r, 3, &current, "a", Protocol::V5, 3600);
    assert_eq!(connack(&mut r, &c).code, 0);
}
