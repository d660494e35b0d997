//! The data API in process (`oneshot` requests against the router): an app with two tenants, an
//! API key each and a device token, over a data store filled through `DataStore::write`. This
//! file: the set-up, the message cache, who may read what, and `/openapi.json`; the metrics are in
//! `series_tests`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value as Json, json};
use switchyard_broker::{Broker, BrokerConfig, DataPath, IntakeHook, NoIntake};
use switchyard_hub::{Hub, HubConfig, Registry, system_clock};
use switchyard_identity::{Domain, KeyFile, ResourceId};
use switchyard_storage::data::{DataStore, Ingest, ResourceKey, Value};
use switchyard_storage::{MemoryDataStore, MemoryStore, NullStore};
use switchyard_transport::ListenerLimits;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::{ApiState, IngestConfig};

/// A fixed instant the test data lives around (2024-12-05T00:00:00Z).
pub const T0: i64 = 1_733_356_800_000;
pub const HOUR: i64 = 3_600_000;

pub struct TestApp {
    pub app: axum::Router,
    pub broker: Broker,
    pub store: Arc<dyn DataStore>,
    /// `Authorization` of tenant A's API key, of tenant B's, and of A's device `sensor-1`.
    pub a: String,
    pub b: String,
    pub device: String,
    _stop: CancellationToken,
}

pub const A: &str = "a.example";
pub const B: &str = "b.example";

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

pub async fn start() -> TestApp {
    start_with(Arc::new(MemoryDataStore::default())).await
}

/// An app over `store`, without a pipeline (data is written to the store directly).
pub async fn start_with(store: Arc<dyn DataStore>) -> TestApp {
    start_app(store, Arc::new(NoIntake), IngestConfig::default()).await
}

/// An app over `store` whose core asks `intake` about every PUBLISH and whose ingest routes
/// use `ingest`.
pub async fn start_app(store: Arc<dyn DataStore>, intake: Arc<dyn IntakeHook>, ingest: IngestConfig) -> TestApp {
    start_full(store, intake, ingest, crate::StreamLimits::default(), crate::WsLimits::default()).await
}

/// [`start_app`] with these stream limits.
pub async fn start_streams(
    store: Arc<dyn DataStore>,
    intake: Arc<dyn IntakeHook>,
    ingest: IngestConfig,
    streams: crate::StreamLimits,
) -> TestApp {
    start_full(store, intake, ingest, streams, crate::WsLimits::default()).await
}

/// [`start_app`] with `ws` bounding the data WebSockets.
pub async fn start_app_ws(
    store: Arc<dyn DataStore>,
    intake: Arc<dyn IntakeHook>,
    ingest: IngestConfig,
    ws: crate::WsLimits,
) -> TestApp {
    start_full(store, intake, ingest, crate::StreamLimits::default(), ws).await
}

async fn start_full(
    store: Arc<dyn DataStore>,
    intake: Arc<dyn IntakeHook>,
    ingest: IngestConfig,
    streams: crate::StreamLimits,
    ws: crate::WsLimits,
) -> TestApp {
    let registry = Arc::new(
        Registry::open(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), system_clock(), 100).unwrap(),
    );
    let mut creds = Vec::new();
    for domain in [A, B] {
        let p = registry.create_tenant(Domain::parse(domain).unwrap()).unwrap();
        creds.push(basic(p.api_key.id.as_str(), &p.api_secret.expose_base64()));
    }
    let device = registry
        .issue_token(&Domain::parse(A).unwrap(), &ResourceId::parse("sensor-1").unwrap(), Duration::from_secs(600))
        .unwrap();
    let hub = Hub::new(registry, HubConfig::default());
    let stop = CancellationToken::new();
    let data = DataPath { intake, store: store.clone() };
    let (broker, _router) =
        Broker::start_with_data(BrokerConfig::default(), Arc::new(NullStore), hub.clone(), data, stop.clone()).unwrap();
    let state = ApiState {
        broker: broker.clone(),
        limits: ListenerLimits { connect_timeout: Duration::from_secs(5), connections: Arc::new(Semaphore::new(10)) },
        shutdown: stop.clone(),
        tasks: TaskTracker::new(),
        hub,
        metrics: None,
        ingest,
        ws,
        streams,
    };
    let b = creds.pop().unwrap();
    let a = creds.pop().unwrap();
    let device = format!("Bearer {}", device.token);
    TestApp { app: crate::router(state), broker, store, a, b, device, _stop: stop }
}

/// A message of `tenant`'s `resource` at `ts` with numeric metrics `points`.
pub fn ingest(tenant: &str, resource: &str, ts: i64, points: &[(&str, f64)]) -> Ingest {
    let mut body = json!({"resource": resource, "timestamp": ts});
    for (name, v) in points {
        body[*name] = json!(v);
    }
    Ingest {
        resource: ResourceKey { tenant: tenant.into(), resource: resource.into() },
        ts,
        message_id: None,
        body: serde_json::to_vec(&body).unwrap().into(),
        expires_at: None,
        keep: 1000,
        points: points.iter().map(|(n, v)| (Arc::from(*n), Value::Number(*v))).collect(),
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    }
}

impl TestApp {
    pub fn write(&self, batch: &[Ingest]) {
        self.store.write(batch, T0).unwrap();
    }

    /// Status and JSON body (`null` when empty) of one request.
    pub async fn call(&self, method: Method, uri: &str, auth: &str, body: Option<Json>) -> (StatusCode, Json) {
        let mut request = Request::builder().method(method).uri(uri).header("authorization", auth);
        let body = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&b).unwrap())
            }
            None => Body::empty(),
        };
        let response = self.app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let json = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, json)
    }

    pub async fn get(&self, uri: &str, auth: &str) -> (StatusCode, Json) {
        self.call(Method::GET, uri, auth, None).await
    }
}

fn timestamps(list: &Json) -> Vec<i64> {
    list.as_array().unwrap().iter().map(|m| m["timestamp"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn current_messages_limit_range_and_delete() {
    let t = start().await;
    let (status, body) = t.get("/resources/r1/current", &t.a).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Written out of order: newest first is by timestamp.
    let batch: Vec<Ingest> =
        [3, 1, 4, 0, 2].iter().map(|i| ingest(A, "r1", T0 + i * 1000, &[("x", *i as f64)])).collect();
    t.write(&batch);

    let (status, body) = t.get("/resources/r1/current", &t.a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"resource": "r1", "timestamp": T0 + 4000, "x": 4.0}));

    let (status, body) = t.get("/resources/r1/messages", &t.a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(timestamps(&body), [4, 3, 2, 1, 0].map(|i| T0 + i * 1000));
    let (_, body) = t.get("/resources/r1/messages?limit=2", &t.a).await;
    assert_eq!(timestamps(&body), [T0 + 4000, T0 + 3000]);
    // `from` inclusive, `until` exclusive, epoch ms or ISO-8601.
    let uri = format!("/resources/r1/messages?from={}&until=2024-12-05T00:00:03Z", T0 + 1000);
    let (_, body) = t.get(&uri, &t.a).await;
    assert_eq!(timestamps(&body), [T0 + 2000, T0 + 1000]);

    let uri = format!("/resources/r1/messages?until={}", T0 + 2000);
    let (status, body) = t.call(Method::DELETE, &uri, &t.a, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"deleted": 2})));
    let (_, body) = t.get("/resources/r1/messages", &t.a).await;
    assert_eq!(timestamps(&body), [4, 3, 2].map(|i| T0 + i * 1000));
    let (status, body) = t.call(Method::DELETE, "/resources/r1/messages", &t.a, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"deleted": 3})));
    assert_eq!(t.get("/resources/r1/current", &t.a).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn messages_of_several_resources() {
    let t = start().await;
    t.write(&[ingest(A, "r1", T0, &[("x", 1.0)]), ingest(A, "r1", T0 + 1, &[]), ingest(A, "r2", T0 + 5, &[])]);
    let q = json!({"resources": ["r1", "r2", "r3"], "limit": 1, "from": "2024-12-05T00:00:00Z"});
    let (status, body) = t.call(Method::POST, "/messages/query", &t.a, Some(q)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(timestamps(&body["r1"]), [T0 + 1]);
    assert_eq!(timestamps(&body["r2"]), [T0 + 5]);
    assert_eq!(body["r3"], json!([]));
    let q = json!({"resources": ["r1"], "until": T0 + 1});
    let (_, body) = t.call(Method::POST, "/messages/query", &t.a, Some(q)).await;
    assert_eq!(timestamps(&body["r1"]), [T0]);
}

#[tokio::test]
async fn tenants_and_devices_read_only_what_is_theirs() {
    let t = start().await;
    t.write(&[ingest(A, "sensor-1", T0, &[("x", 1.0)]), ingest(A, "r2", T0, &[("x", 2.0)])]);
    // Tenant B's key names A's resource ids and finds nothing: reads are scoped to B.
    for uri in ["/resources/sensor-1/current", "/resources/r2/series/x/latest"] {
        assert_eq!(t.get(uri, &t.b).await.0, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(t.get(uri, &t.a).await.0, StatusCode::OK, "{uri}");
    }
    let (_, body) = t.get("/resources/sensor-1/messages", &t.b).await;
    assert_eq!(body, json!([]));
    let (_, body) = t.get("/resources/r2/series", &t.b).await;
    assert_eq!(body, json!([]));
    let (_, body) = t.call(Method::POST, "/messages/query", &t.b, Some(json!({"resources": ["r2"]}))).await;
    assert_eq!(body, json!({"r2": []}));
    let (status, body) = t.call(Method::DELETE, "/resources/r2", &t.b, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"messages": 0, "points": 0})));
    assert_eq!(t.get("/resources/r2/current", &t.a).await.0, StatusCode::OK);

    // A device reads its own resource, nothing else, and deletes nothing.
    assert_eq!(t.get("/resources/sensor-1/current", &t.device).await.0, StatusCode::OK);
    assert_eq!(t.get("/resources/sensor-1/series", &t.device).await.0, StatusCode::OK);
    assert_eq!(t.get("/resources/r2/current", &t.device).await.0, StatusCode::FORBIDDEN);
    let q = json!({"resources": ["sensor-1", "r2"]});
    assert_eq!(t.call(Method::POST, "/messages/query", &t.device, Some(q)).await.0, StatusCode::FORBIDDEN);
    for uri in ["/resources/sensor-1/messages", "/resources/sensor-1"] {
        assert_eq!(t.call(Method::DELETE, uri, &t.device, None).await.0, StatusCode::FORBIDDEN, "{uri}");
    }
    // No or wrong credentials.
    assert_eq!(t.get("/resources/r2/current", "").await.0, StatusCode::UNAUTHORIZED);
    let wrong = basic("nope", "nope");
    assert_eq!(t.get("/resources/r2/current", &wrong).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_parameters_are_400_with_details() {
    let t = start().await;
    let q = |resource: &str, limit: usize| json!({"resource": resource, "metric": "x", "limit": limit});
    let cases: &[(Method, &str, Option<Json>)] = &[
        (Method::GET, "/resources/bad%20id/current", None),
        (Method::GET, "/resources/r1/messages?limit=0", None),
        (Method::GET, "/resources/r1/messages?limit=1001", None),
        (Method::GET, "/resources/r1/messages?limit=many", None),
        (Method::GET, "/resources/r1/messages?from=yesterday", None),
        (Method::GET, "/resources/r1/messages?from=2000&until=1000", None),
        (Method::POST, "/messages/query", Some(json!({"resources": []}))),
        (Method::POST, "/messages/query", Some(json!({"resources": ["a b"]}))),
        (Method::POST, "/messages/query", Some(json!({"resources": ["r1"], "colour": "red"}))),
        (Method::GET, "/resources/r1/series/x?aggregates=min,avg", None),
        (Method::GET, "/resources/r1/series/x?grouping=fortnightly", None),
        (Method::GET, "/resources/r1/series/x?order=sideways", None),
        (Method::GET, "/resources/r1/series/x?limit=0", None),
        (Method::GET, "/resources/r1/series/x?from=0&until=86400000000&grouping=1s&aggregates=max", None),
        (Method::POST, "/series/query", Some(json!({"queries": []}))),
        (Method::POST, "/series/query", Some(json!({"queries": [{"resource": "r1", "metric": "x", "order": "up"}]}))),
        (Method::POST, "/series/query", Some(json!({"queries": [q("r1", 50_001), q("r2", 1)]}))),
        (Method::DELETE, "/resources/r1?onlytimeseries=maybe", None),
        (Method::DELETE, "/resources/r1?metrics=,", None),
    ];
    for (method, uri, body) in cases {
        let (status, json) = t.call(method.clone(), uri, &t.a, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {json}");
        let details = json["details"].as_array().map_or(0, Vec::len);
        assert!(json["error"].is_string() && details > 0, "{uri}: {json}");
    }
    let (_, json) = t.get("/resources/r1/series/x?aggregates=min,avg,percentile(101)", &t.a).await;
    let details = json["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{json}");
    assert!(details[0].as_str().unwrap().contains("avg"), "{json}");
    let (_, json) = t.get("/resources/r1/messages?from=yesterday", &t.a).await;
    assert!(json["details"][0].as_str().unwrap().contains("yesterday"), "{json}");
}

#[tokio::test]
async fn openapi_lists_the_paths() {
    let t = start().await;
    let (status, doc) = t.get("/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/", "get"),
        ("/health", "get"),
        ("/openapi.json", "get"),
        ("/resources/{id}/current", "get"),
        ("/resources/{id}/messages", "get"),
        ("/resources/{id}/messages", "delete"),
        ("/messages/query", "post"),
        ("/resources/{id}/series", "get"),
        ("/resources/{id}/series/{metric}", "get"),
        ("/resources/{id}/series/{metric}/latest", "get"),
        ("/series/query", "post"),
        ("/resources/{id}", "delete"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
    }
    let params = &paths["/resources/{id}/series/{metric}"]["get"]["parameters"];
    let names: Vec<&str> = params.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["id", "metric", "from", "until", "aggregates", "grouping", "order", "limit"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}
