//! `GET /health` reports storage: 503 while commits fail, 200 once they land again, 503 for good
//! once the committer is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use switchyard_broker::{AnonymousAuth, Broker, BrokerConfig, Namespace};
use switchyard_hub::{Hub, HubConfig, Registry};
use switchyard_identity::KeyFile;
use switchyard_storage::{MemoryStore, SessionOp, SessionStore, Snapshot, StorageError};
use switchyard_transport::ListenerLimits;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::ApiState;

/// Commits work (0), fail (1) or panic (2); failures are counted.
struct FlakyStore {
    mode: AtomicU8,
    failures: watch::Sender<usize>,
}

impl SessionStore for FlakyStore {
    fn commit(&self, _ops: &[SessionOp]) -> Result<(), StorageError> {
        match self.mode.load(Ordering::SeqCst) {
            0 => Ok(()),
            1 => {
                self.failures.send_modify(|n| *n += 1);
                Err(StorageError::Backend("disk on fire".into()))
            }
            _ => panic!("storage backend panicked (test)"),
        }
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
}

async fn health(app: &axum::Router) -> (StatusCode, serde_json::Value) {
    let request = Request::get("/health").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn health_reports_failing_and_dead_storage() {
    let store = Arc::new(FlakyStore { mode: AtomicU8::new(0), failures: watch::channel(0).0 });
    let clock = Arc::new(switchyard_broker::now_ms);
    let registry = Registry::open(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), clock, 100).unwrap();
    let hub = Hub::new(Arc::new(registry), HubConfig::default());
    let auth = Arc::new(AnonymousAuth::default());
    let stop = CancellationToken::new();
    let (broker, _router) = Broker::start(BrokerConfig::default(), store.clone(), auth, stop.clone()).unwrap();
    let limits = ListenerLimits { connect_timeout: Duration::from_secs(5), connections: Arc::new(Semaphore::new(1)) };
    let state = ApiState {
        broker: broker.clone(),
        limits,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        hub,
        metrics: None,
        ingest: crate::IngestConfig::default(),
        ws: crate::WsLimits::default(),
        streams: Default::default(),
    };
    let app = crate::router(state);
    assert_eq!(health(&app).await.0, StatusCode::OK);

    // Any change to store will do: dropping a namespace is one.
    store.mode.store(1, Ordering::SeqCst);
    let dropping = tokio::spawn({
        let broker = broker.clone();
        async move { broker.drop_namespace(Namespace::anonymous()).await }
    });
    // The committer marks storage failing after a failed attempt and before the next: a second
    // attempt means the first is reported.
    store.failures.subscribe().wait_for(|n| *n >= 2).await.unwrap();
    let (status, body) = health(&app).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("storage failing")));
    assert_eq!(body["error"], "storage backend failed: disk on fire");
    store.mode.store(0, Ordering::SeqCst);
    dropping.await.unwrap().expect("stored once storage works again");
    assert_eq!(health(&app).await.0, StatusCode::OK);

    store.mode.store(2, Ordering::SeqCst);
    let lost = broker.drop_namespace(Namespace::anonymous()).await;
    assert!(lost.is_err(), "never durable");
    let (status, body) = health(&app).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("storage unavailable")));
    stop.cancel();
}
