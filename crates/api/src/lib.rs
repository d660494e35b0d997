//! The HTTP(S) front door. One axum router serves plain HTTP and HTTPS: service info, health and
//! metrics, the admin API and the Device Hub API, the REST, SSE and WebSocket APIs as they land,
//! and MQTT over WebSocket at `/mqtt`, which hands the upgraded socket to the same connection
//! task as MQTT over TCP.
//!
//! - `admin`: `/admin/tenants...` (admin token); `devices`: `/devices...`, `/apikeys...` (API
//!   key); `auth`: the extractors that authenticate them; `error`: the one error type;
//!   `metrics`: `GET /metrics`; `serving`: the HTTP(S) listeners and their connection cap.
//! - `ingest`: data in (`POST /resources/{id}/events`, `POST /messages`), through the pipeline
//!   and the core, answered once durable.
//! - `data`: the message cache (`/resources/{id}/current`, `.../messages`, `/messages/query`);
//!   `series`: the metrics (`/resources/{id}/series...`, `/series/query`, `DELETE
//!   /resources/{id}`); `timearg`: instants in query parameters; `openapi`: `/openapi.json`.
//! - `ws_stream`: the data WebSockets (`/resources/{id}/{events|commands}/{subscribe|publish}`,
//!   `/socket`) and their credentials; `ws_publish`: frames in, through the pipeline and the
//!   core; `demo`: `GET /demo`, a page that bridges a browser to MQTT devices over them.
//! - `commands`: `POST`/`GET /resources/{id}/commands` (send, history); `stream`: SSE and NDJSON
//!   of a resource's events or commands and of the tenant (`GET /messages`), fed by the core's
//!   listeners.

mod admin;
mod auth;
mod commands;
#[cfg(test)]
mod commands_tests;
mod data;
#[cfg(test)]
mod data_tests;
mod demo;
mod devices;
mod error;
#[cfg(test)]
mod health_tests;
mod ingest;
#[cfg(test)]
mod ingest_tests;
mod metrics;
mod openapi;
mod origin;
mod series;
#[cfg(test)]
mod series_tests;
mod serving;
mod stream;
#[cfg(test)]
mod stream_tests;
mod timearg;
mod ws_io;
mod ws_publish;
mod ws_stream;
#[cfg(test)]
mod ws_tests;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use switchyard_broker::{Broker, StorageStatus};
use switchyard_hub::Hub;
use switchyard_transport::ListenerLimits;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::AdminAuth;
pub use devices::parse_ttl;
pub use error::ApiError;
pub use ingest::{DEFAULT_MAX_BODY, IngestConfig};
pub use origin::{AllowedOrigins, protect};
pub use serving::{HttpLimits, serve};
pub use stream::{DEFAULT_MAX_STREAMS, DEFAULT_QUEUE, StreamLimits};
pub use ws_io::WsIo;
pub use ws_stream::WsLimits;

/// Largest JSON body the admin and Device Hub APIs accept.
const MAX_HUB_BODY: usize = 64 * 1024;
/// Largest body of a data query (`POST /messages/query`, `/series/query`).
const MAX_QUERY_BODY: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub broker: Broker,
    pub limits: ListenerLimits,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Tenants, devices, API keys, and authentication of every request.
    pub hub: Arc<Hub>,
    /// The Prometheus recorder's handle, when one is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The pipeline and body limit of `POST /resources/{id}/events` and `POST /messages`.
    pub ingest: IngestConfig,
    /// Bounds of the data WebSockets (`/resources/{id}/.../subscribe|publish`, `/socket`).
    pub ws: WsLimits,
    /// How many SSE/NDJSON streams may be open and how far each may fall behind.
    pub streams: StreamLimits,
}

/// The router with every route.
pub fn router(state: ApiState) -> Router {
    let hub = admin::routes().merge(devices::routes()).layer(DefaultBodyLimit::max(MAX_HUB_BODY));
    let reads = data::routes().merge(series::routes()).layer(DefaultBodyLimit::max(MAX_QUERY_BODY));
    Router::new()
        .route("/", get(info))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi))
        .merge(reads)
        .merge(ingest::routes(state.ingest.max_body))
        .merge(commands::routes(state.ingest.max_body))
        .route("/metrics", get(metrics::metrics))
        .route("/mqtt", get(mqtt_ws))
        .merge(ws_stream::routes())
        .route("/demo", get(demo::page))
        .merge(hub)
        .with_state(state)
}

/// Service name and version.
#[utoipa::path(get, path = "/", tag = "service", security(()), responses((status = 200, description = "`{\"name\": \"switchyard\", \"version\"}`")))]
async fn info() -> Json<serde_json::Value> {
    Json(json!({"name": "switchyard", "version": env!("CARGO_PKG_VERSION")}))
}

/// 200 while the broker serves; 503 with the reason while shutting down, while storage commits
/// fail (acknowledgements wait, they are retried), or once the storage committer is gone.
#[utoipa::path(get, path = "/health", tag = "service", security(()), responses(
    (status = 200, description = "`{\"status\": \"ok\", \"connections\": n}`"),
    (status = 503, description = "`{\"status\": reason}`"),
))]
async fn health(State(state): State<ApiState>) -> Response {
    let unavailable = |body| (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    if state.shutdown.is_cancelled() {
        return unavailable(json!({"status": "shutting down"}));
    }
    match state.broker.storage_status() {
        StorageStatus::Ok => {}
        StorageStatus::Failing { since_ms, error } => {
            return unavailable(json!({"status": "storage failing", "since_ms": since_ms, "error": error}));
        }
        StorageStatus::Dead => return unavailable(json!({"status": "storage unavailable"})),
    }
    let stats = state.broker.stats();
    let connections = stats.connections.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({"status": "ok", "connections": connections})).into_response()
}

/// MQTT over WebSocket (subprotocol `mqtt`): upgrade, then run the common connection task.
async fn mqtt_ws(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(permit) = Arc::clone(&state.limits.connections).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "connection limit reached"}))).into_response();
    };
    let max = state.broker.config().max_packet_size as usize + 8;
    let tasks = state.tasks.clone();
    ws.protocols(["mqtt"]).max_message_size(max).on_upgrade(move |socket| {
        tasks.track_future(async move {
            let timeout = state.limits.connect_timeout;
            switchyard_transport::serve(WsIo::new(socket), Some(peer), state.broker, timeout, state.shutdown).await;
            drop(permit);
        })
    })
}
