//! Data in over HTTP, in process: a real core with the pipeline and a memory data store, the
//! same store the read routes serve. Posted data is stored when the answer comes, delivered live
//! to subscribers of the events topic, refused with details when invalid or too large, and only
//! a tenant's applications and the device itself may post.

use std::future::poll_fn;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value as Json, json};
use switchyard_broker::{ConnectRequest, Event, Namespace, Outbox, Outgoing, Principal};
use switchyard_codec::{Connect, Packet, Properties, Protocol, QoS, SubOptions, Subscribe, SubscribeFilter};
use switchyard_identity::{Domain, Identity};
use switchyard_pipeline::{Pipeline, PipelineConfig};
use switchyard_storage::MemoryDataStore;
use switchyard_storage::data::{ResourceKey, TimeRange};
use tower::ServiceExt;

use crate::IngestConfig;
use crate::data_tests::{A, B, TestApp, start_app};

/// An app with the pipeline (at most 3 messages per request) over a memory data store.
pub(crate) async fn start(max_body: usize) -> TestApp {
    let pipeline = Arc::new(Pipeline::new(PipelineConfig { max_messages_per_request: 3, ..PipelineConfig::default() }));
    let store = Arc::new(MemoryDataStore::default());
    start_app(store, pipeline.clone(), IngestConfig { pipeline, max_body }).await
}

impl TestApp {
    pub(crate) async fn post(&self, uri: &str, auth: &str, body: &str) -> (StatusCode, Json) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }

    pub(crate) fn stored(&self, tenant: &str, resource: &str) -> Vec<Json> {
        let key = ResourceKey { tenant: tenant.into(), resource: resource.into() };
        let now = switchyard_broker::now_ms() as i64;
        let messages = self.store.messages(&key, TimeRange::default(), 100, now).unwrap();
        messages.iter().map(|m| serde_json::from_slice(&m.body).unwrap()).collect()
    }

    /// An MQTT session of tenant `domain` subscribed to `filter`, as the core sees one.
    pub(crate) async fn subscriber(&self, domain: &str, filter: &str) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let conn = self.broker.next_conn_id();
        let namespace = Namespace::tenant(&Domain::parse(domain).unwrap());
        let principal = Principal { namespace, identity: Identity::Anonymous, owner: "app".into(), epoch: 0 };
        let connect = Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: format!("sub{conn}"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        let client_id = Arc::from(connect.client_id.as_str());
        let request = ConnectRequest {
            conn,
            principal,
            connect: Box::new(connect),
            client_id,
            outbox: Arc::clone(&outbox),
            connack_properties: Properties::default(),
            client_receive_maximum: 100,
            client_max_packet_size: u32::MAX,
        };
        self.broker.send(Event::Connect(Box::new(request))).await.unwrap();
        let options = SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() };
        let filters = vec![SubscribeFilter { filter: filter.into(), options }];
        let subscribe = Subscribe { packet_id: 1, filters, properties: Properties::default() };
        self.broker.send(Event::Subscribe { conn, subscribe: Box::new(subscribe), allowed: vec![true] }).await.unwrap();
        let mut seen = Vec::new();
        while !seen.iter().any(|i| matches!(i, Outgoing::Control(p) if matches!(**p, Packet::SubAck(_)))) {
            poll_fn(|cx| outbox.poll_ready(cx, true)).await;
            outbox.drain(&mut seen);
        }
        outbox
    }
}

/// Payloads delivered to `outbox` so far.
pub(crate) fn delivered(outbox: &Outbox) -> Vec<(String, Json)> {
    let mut items = Vec::new();
    outbox.drain(&mut items);
    items
        .into_iter()
        .filter_map(|i| match i {
            Outgoing::Publish(d) => {
                Some((d.message.topic.to_string(), serde_json::from_slice(&d.message.payload).unwrap()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn posted_events_are_stored_when_answered_and_delivered_live() {
    let t = start(1 << 20).await;
    let live = t.subscriber(A, "a.example/resources/+/events").await;
    let other_tenant = t.subscriber(B, "#").await;
    let (status, body) = t.post("/resources/r1/events", &t.a, r#"{"temp": 21.5, "timestamp": 1000}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let normalized = json!({"temp": 21.5, "timestamp": 1000, "resource": "r1"});
    assert_eq!(body, json!({"message": "1 message stored", "content": normalized}));
    assert_eq!(t.stored(A, "r1"), std::slice::from_ref(&normalized), "on disk when answered");
    assert_eq!(delivered(&live), [("a.example/resources/r1/events".to_owned(), normalized)]);

    // An array, with options: stored with its TTL, delivered as one message.
    let (status, body) = t.post("/resources/r1/events?ttl=1h", &t.a, r#"[{"x": 1}, {"x": 2, "messageId": "m"}]"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["content"].as_array().unwrap().len(), 2);
    assert_eq!(delivered(&live).len(), 1);
    // The same messageId again is not stored twice.
    let (status, body) = t.post("/resources/r1/events", &t.a, r#"{"x": 3, "messageId": "m"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "0 messages stored, 1 already stored (messageId)");
    assert_eq!(t.stored(A, "r1").len(), 3);
    // store=false: delivered, not stored.
    let (status, body) = t.post("/resources/r1/events?store=false", &t.a, r#"{"x": 4}"#).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::OK, Some("1 message delivered, not stored")));
    assert_eq!(t.stored(A, "r1").len(), 3);
    assert_eq!(delivered(&live).len(), 2);

    // POST /messages: each message to its own resource, one by one.
    let (status, body) = t.post("/messages", &t.a, r#"[{"resource": "r2", "v": 1}, {"resource": "r3", "v": 2}]"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "2 messages stored");
    let topics: Vec<String> = delivered(&live).into_iter().map(|(topic, _)| topic).collect();
    assert_eq!(topics, ["a.example/resources/r2/events", "a.example/resources/r3/events"]);
    assert_eq!((t.stored(A, "r2").len(), t.stored(A, "r3").len()), (1, 1));
    assert!(delivered(&other_tenant).is_empty(), "nothing crosses tenants");
    assert!(t.stored(B, "r1").is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_with_details_and_nothing_is_stored() {
    let t = start(256).await;
    let (status, body) = t.post("/resources/r1/events", &t.a, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid JSON");
    assert!(!body["details"].as_array().unwrap().is_empty(), "{body}");
    let (status, body) = t.post("/resources/r1/events", &t.a, r#"{"resource": "r2"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["details"][0].as_str().unwrap().starts_with("resource"), "names the field: {body}");
    let (status, body) = t.post("/resources/r1/events?ttl=soon", &t.a, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = t.post("/messages", &t.a, r#"{"v": 1}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a message without resource: {body}");
    let (status, body) = t.post("/resources/r1/events", &t.a, "[{},{},{},{}]").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "more messages than allowed: {body}");
    assert!(!body["details"].as_array().unwrap().is_empty(), "{body}");
    let big = format!(r#"{{"x": "{}"}}"#, "y".repeat(300));
    let (status, body) = t.post("/resources/r1/events", &t.a, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(t.stored(A, "r1").is_empty());
}

#[tokio::test]
async fn only_the_tenant_and_the_device_itself_may_post() {
    let t = start(1 << 20).await;
    let (status, _) = t.post("/resources/r1/events", "Basic bm9wZTpub3Bl", "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.post("/resources/r1/events", "", "{}").await;
    assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{status}");
    let (status, body) = t.post("/resources/sensor-1/events", &t.device, r#"{"t": 1}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.stored(A, "sensor-1").len(), 1);
    let (status, _) = t.post("/resources/sensor-2/events", &t.device, r#"{"t": 1}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.post("/messages", &t.device, r#"[{"resource": "sensor-1"}, {"resource": "x"}]"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.post("/messages", &t.device, r#"{"resource": "sensor-1"}"#).await;
    assert_eq!(status, StatusCode::OK);
    // Tenant B's key writes into B only.
    let (status, _) = t.post("/resources/sensor-1/events", &t.b, "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((t.stored(A, "sensor-1").len(), t.stored(B, "sensor-1").len()), (2, 1));
}
