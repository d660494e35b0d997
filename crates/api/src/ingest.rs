//! Data in over HTTP (SPEC §4.1, §5): the same pipeline as MQTT events topics, then the core,
//! which delivers the messages live and stores them in its group commit; the answer waits for
//! that commit, so a 200 means the messages and their points are on disk.
//!
//! - `POST /resources/{id}/events` — one JSON object or an array of them, for resource `id`;
//!   delivered to subscribers of `{domain}/resources/{id}/events` as normalized (an array stays
//!   one message);
//! - `POST /messages` — the same, each message naming its own `resource`, delivered to its
//!   resource's events topic one by one.
//!
//! Both take `store`, `forward` and `ttl` in the query string and answer
//! `{"message": "...", "content": <the normalized input>}`. An application (`Basic
//! apiKey:apiSecret`) may post for every resource of its tenant; a device (`Bearer` token) only
//! for itself (403 otherwise). Invalid input is 400 and more than the limits allow 413, each with
//! `{"error", "details"}` naming the field; storage failing or gone is 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use switchyard_broker::{IngestError, Namespace, StorageStatus};
use switchyard_identity::topic::{Channel, TenantTopic};
use switchyard_identity::{DeviceIdentity, Domain, ResourceId};
use switchyard_pipeline::{ErrorKind, IntakeError, Normalized, Options, Pipeline, PipelineConfig};
use switchyard_storage::data::Written;

use crate::ApiState;
use crate::auth::DataAuth;
use crate::data::{now_ms, path_id};
use crate::error::ApiError;

/// Largest request body by default: 1 MiB (`[pipeline] max_body`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// What the ingest routes need besides the core: the pipeline and the body limit.
#[derive(Clone)]
pub struct IngestConfig {
    pub pipeline: Arc<Pipeline>,
    /// Bytes of a request body; larger is 413.
    pub max_body: usize,
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig { pipeline: Arc::new(Pipeline::new(PipelineConfig::default())), max_body: DEFAULT_MAX_BODY }
    }
}

/// The ingest routes, taking bodies up to `max_body` bytes.
pub fn routes(max_body: usize) -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/resources/{id}/events", post(events))
        .route("/messages", post(messages))
        .layer(DefaultBodyLimit::max(max_body))
}

/// Send data of resource `id` (an object or an array of objects).
#[utoipa::path(post, path = "/resources/{id}/events", tag = "ingest",
    params(
        ("id" = String, Path, description = "resource id"),
        ("store" = Option<bool>, Query, description = "false: forward only, nothing stored"),
        ("forward" = Option<bool>, Query, description = "false: store only"),
        ("ttl" = Option<String>, Query, description = "retention: seconds, `30d`/`12h`/`15m`/`10s`, or ISO-8601"),
    ),
    request_body(content = serde_json::Value, description = "a JSON object or an array of objects"),
    responses(
        (status = 200, description = "`{\"message\", \"content\": normalized input}`, once stored", body = serde_json::Value),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn events(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    let domain = writer(&caller, Some(&resource))?.clone();
    let options = Options::from_query(query.as_deref().unwrap_or_default()).map_err(refused)?;
    let body = body?;
    let normalized = state.ingest.pipeline.http(&domain, Some(&resource), &body, options, now_ms()).map_err(refused)?;
    let device = DeviceIdentity { domain: domain.clone(), resource };
    let topic: Arc<str> = Arc::from(TenantTopic::channel(&device, Channel::Events).full());
    let live = vec![(topic, normalized.payload.clone())];
    ingest(&state, &domain, live, normalized).await
}

/// Send data of several resources: an object or an array of objects, each with `resource`.
#[utoipa::path(post, path = "/messages", tag = "ingest",
    params(
        ("store" = Option<bool>, Query, description = "false: forward only, nothing stored"),
        ("forward" = Option<bool>, Query, description = "false: store only"),
        ("ttl" = Option<String>, Query, description = "retention: seconds, `30d`/`12h`/`15m`/`10s`, or ISO-8601"),
    ),
    request_body(content = serde_json::Value, description = "a JSON object or an array of objects, each with `resource`"),
    responses(
        (status = 200, description = "`{\"message\", \"content\": normalized input}`, once stored", body = serde_json::Value),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn messages(
    caller: DataAuth,
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let domain = writer(&caller, None)?.clone();
    let options = Options::from_query(query.as_deref().unwrap_or_default()).map_err(refused)?;
    let body = body?;
    let normalized = state.ingest.pipeline.http(&domain, None, &body, options, now_ms()).map_err(refused)?;
    // One live message per input message, on its resource's events topic.
    let parsed: serde_json::Value = serde_json::from_slice(&normalized.payload).map_err(|e| {
        tracing::error!(error = %e, "normalized payload is not JSON");
        ApiError::Unavailable
    })?;
    let items = match parsed {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let mut live = Vec::with_capacity(items.len());
    for item in items {
        let named = item.get("resource").and_then(|r| r.as_str()).and_then(|r| ResourceId::parse(r).ok());
        let Some(resource) = named else {
            tracing::error!("normalized message without a valid resource");
            return Err(ApiError::Unavailable);
        };
        if let DataAuth::Device(d) = &caller
            && d.resource != resource
        {
            return Err(ApiError::Forbidden("a device may send only its own events".into()));
        }
        let device = DeviceIdentity { domain: domain.clone(), resource };
        let topic: Arc<str> = Arc::from(TenantTopic::channel(&device, Channel::Events).full());
        live.push((topic, Bytes::from(serde_json::to_vec(&item).unwrap_or_default())));
    }
    ingest(&state, &domain, live, normalized).await
}

/// The tenant `caller` may send data for `resource` (for `POST /messages`, checked per message).
fn writer<'a>(caller: &'a DataAuth, resource: Option<&ResourceId>) -> Result<&'a Domain, ApiError> {
    match caller {
        DataAuth::App(app) => Ok(&app.domain),
        DataAuth::Device(d) if resource.is_none_or(|r| *r == d.resource) => Ok(&d.domain),
        DataAuth::Device(_) => Err(ApiError::Forbidden("a device may send only its own events".into())),
    }
}

/// Input the pipeline refused, as the client is told.
pub(crate) fn refused(e: IntakeError) -> ApiError {
    match e.kind {
        ErrorKind::Invalid => ApiError::bad_request(e.error, e.details),
        ErrorKind::TooLarge => ApiError::TooLargeInput { error: e.error, details: e.details },
        ErrorKind::Unavailable => ApiError::Unavailable,
    }
}

/// Hand the messages to the core and answer once they are durable.
async fn ingest(
    state: &ApiState,
    domain: &Domain,
    live: Vec<(Arc<str>, Bytes)>,
    normalized: Normalized,
) -> Result<Response, ApiError> {
    ingest_expiring(state, domain, live, None, normalized).await
}

/// [`ingest`] with live messages expiring at `expires_at_ms` (a command's `ttl`).
pub(crate) async fn ingest_expiring(
    state: &ApiState,
    domain: &Domain,
    live: Vec<(Arc<str>, Bytes)>,
    expires_at_ms: Option<u64>,
    normalized: Normalized,
) -> Result<Response, ApiError> {
    // Fail fast rather than wait behind commits being retried.
    if state.broker.storage_status() != StorageStatus::Ok {
        return Err(ApiError::Unavailable);
    }
    let Normalized { payload, data, count, .. } = normalized;
    let written = match state.broker.ingest_expiring(Namespace::tenant(domain), live, expires_at_ms, data).await {
        Ok(written) => written,
        Err(IngestError::Unavailable) => return Err(ApiError::Unavailable),
    };
    let duplicates = written.iter().filter(|w| **w == Written::Duplicate).count();
    let stored = written.len() - duplicates;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let message = match (written.len(), duplicates) {
        (0, _) => format!("{count} message{} delivered, not stored", plural(count)),
        (_, 0) => format!("{stored} message{} stored", plural(stored)),
        _ => format!("{stored} message{} stored, {duplicates} already stored (messageId)", plural(stored)),
    };
    // The normalized payload is JSON already: written into the answer as it is.
    let mut out = Vec::with_capacity(payload.len() + message.len() + 32);
    out.extend_from_slice(b"{\"message\":");
    out.extend_from_slice(&serde_json::to_vec(&message).unwrap_or_default());
    out.extend_from_slice(b",\"content\":");
    out.extend_from_slice(&payload);
    out.push(b'}');
    Ok(([(CONTENT_TYPE, "application/json")], out).into_response())
}
