//! The message cache over HTTP (SPEC §5), and what the data routes share (the caller's resource
//! key, time ranges, store calls off the event loop).
//!
//! - `GET /resources/{id}/current` → the stored message with the newest timestamp (404 when none);
//! - `GET /resources/{id}/messages?limit=&from=&until=` → `[message, ...]`, newest first (`limit`
//!   *default* 100, at most 1000; `from` inclusive, `until` exclusive, epoch ms or ISO-8601);
//! - `DELETE /resources/{id}/messages?from=&until=` → `{"deleted": n}` (every message when no
//!   range is given);
//! - `POST /messages/query {"resources": [id, ...], "limit"?, "from"?, "until"?}` →
//!   `{"id": [message, ...], ...}`, one key per requested resource (at most 100 resources; the
//!   limit applies per resource).
//!
//! Who may call: an application (`Basic apiKey:apiSecret`) for every resource of its tenant; a
//! device (`Bearer` token) reads only its own resource and deletes nothing. Messages are served
//! exactly as stored (normalized JSON with `timestamp` and `resource`).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use switchyard_identity::ResourceId;
use switchyard_storage::StorageError;
use switchyard_storage::data::{DataStore, StoredMessage, TimeRange};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::auth::DataAuth;
use crate::error::{ApiError, json_body};
use crate::timearg::Instant;

/// Messages per resource when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most messages per resource in one answer.
pub const MAX_LIMIT: usize = 1000;
/// Most resources in one `POST /messages/query`.
pub const MAX_RESOURCES: usize = 100;

/// The message cache routes.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/resources/{id}/current", get(current))
        .route("/resources/{id}/messages", get(messages).delete(delete_messages))
        .route("/messages/query", post(query))
}

/// Parses a resource id from a path or a body.
pub fn resource_id(raw: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(raw).map_err(|e| ApiError::bad_request("invalid resource id", vec![format!("{raw:?}: {e}")]))
}

/// The `{id}` of a `/resources/{id}...` path.
pub fn path_id(path: Result<Path<String>, PathRejection>) -> Result<ResourceId, ApiError> {
    let Path(raw) = path?;
    resource_id(&raw)
}

/// Runs a blocking store call on the blocking pool.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(result?),
        Err(e) => {
            tracing::error!(error = %e, "data store call panicked");
            Err(ApiError::Unavailable)
        }
    }
}

/// The server's clock, epoch ms.
pub fn now_ms() -> i64 {
    i64::try_from(switchyard_broker::now_ms()).unwrap_or(i64::MAX)
}

/// Parses one instant parameter, naming it in the error.
pub fn instant(name: &str, raw: Option<&Instant>) -> Result<Option<i64>, ApiError> {
    raw.map(|i| i.millis().map_err(|e| ApiError::bad_request(format!("invalid {name}"), vec![e]))).transpose()
}

/// `from`/`until` as a range; `from` after `until` is refused.
pub fn range(from: Option<&Instant>, until: Option<&Instant>) -> Result<TimeRange, ApiError> {
    let range = TimeRange { from: instant("from", from)?, until: instant("until", until)? };
    if let (Some(f), Some(u)) = (range.from, range.until)
        && f > u
    {
        return Err(ApiError::bad_request("from is after until", vec![format!("from={f}, until={u}")]));
    }
    Ok(range)
}

/// A text query parameter as an [`Instant`].
pub fn text_instant(raw: &Option<String>) -> Option<Instant> {
    raw.clone().map(Instant::Text)
}

fn check_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            format!("limit must be between 1 and {MAX_LIMIT}"),
            vec![format!("limit: {limit}")],
        ));
    }
    Ok(limit)
}

/// Messages as one JSON array, each exactly as stored.
fn json_array(messages: &[StoredMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + messages.iter().map(|m| m.body.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&m.body);
    }
    out.push(b']');
    out
}

fn json_response(body: impl Into<Body>) -> Response {
    ([(CONTENT_TYPE, "application/json")], body.into()).into_response()
}

/// The stored message with the newest timestamp.
#[utoipa::path(get, path = "/resources/{id}/current", tag = "messages",
    params(("id" = String, Path, description = "resource id")),
    responses(
        (status = 200, description = "the message, as stored", body = serde_json::Value),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
        (status = 404, description = "no message stored", body = crate::error::ErrorBody),
    ))]
pub async fn current(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = caller.read(&path_id(id)?)?;
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    match blocking(move || store.current(&key, now)).await? {
        Some(message) => Ok(json_response(message.body)),
        None => Err(ApiError::NotFound("no message stored for this resource".into())),
    }
}

/// `?limit=&from=&until=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesParams {
    /// At most this many messages (*default* 100, at most 1000).
    limit: Option<usize>,
    /// Inclusive start: epoch ms or ISO-8601.
    from: Option<String>,
    /// Exclusive end: epoch ms or ISO-8601.
    until: Option<String>,
}

/// Stored messages, newest first.
#[utoipa::path(get, path = "/resources/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "resource id"), MessagesParams),
    responses(
        (status = 200, description = "messages newest first, as stored", body = Vec<serde_json::Value>),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn messages(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<MessagesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = caller.read(&path_id(id)?)?;
    let Query(p) = params?;
    let limit = check_limit(p.limit)?;
    let range = range(text_instant(&p.from).as_ref(), text_instant(&p.until).as_ref())?;
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let found = blocking(move || store.messages(&key, range, limit, now)).await?;
    Ok(json_response(json_array(&found)))
}

/// `?from=&until=` of a delete.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteMessagesParams {
    /// Inclusive start: epoch ms or ISO-8601.
    from: Option<String>,
    /// Exclusive end: epoch ms or ISO-8601.
    until: Option<String>,
}

/// How many records a delete removed.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Deleted {
    deleted: u64,
}

/// Deletes the resource's stored messages (in the range, when given). API keys only.
#[utoipa::path(delete, path = "/resources/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "resource id"), DeleteMessagesParams),
    responses(
        (status = 200, body = Deleted),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn delete_messages(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DeleteMessagesParams>, QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let key = caller.delete(&path_id(id)?)?;
    let Query(p) = params?;
    let range = range(text_instant(&p.from).as_ref(), text_instant(&p.until).as_ref())?;
    let store: Arc<dyn DataStore> = Arc::clone(state.broker.data_store());
    let deleted = blocking(move || store.delete_messages(&key, range)).await?;
    Ok(Json(Deleted { deleted }))
}

/// The body of `POST /messages/query`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Resource ids (1 to 100).
    resources: Vec<String>,
    /// Per resource (*default* 100, at most 1000).
    limit: Option<usize>,
    /// Inclusive start: epoch ms or ISO-8601.
    from: Option<Instant>,
    /// Exclusive end: epoch ms or ISO-8601.
    until: Option<Instant>,
}

/// Stored messages of several resources: one key per resource, each newest first.
#[utoipa::path(post, path = "/messages/query", tag = "messages", request_body = MessagesQuery,
    responses(
        (status = 200, description = "`{resource: [message, ...]}`", body = serde_json::Value),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn query(
    caller: DataAuth,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q: MessagesQuery = json_body(&body?)?;
    if q.resources.is_empty() || q.resources.len() > MAX_RESOURCES {
        return Err(ApiError::bad_request(
            format!("resources must list 1 to {MAX_RESOURCES} resource ids"),
            vec![format!("resources: {} given", q.resources.len())],
        ));
    }
    let limit = check_limit(q.limit)?;
    let range = range(q.from.as_ref(), q.until.as_ref())?;
    let mut keys = Vec::with_capacity(q.resources.len());
    for raw in &q.resources {
        let key = caller.read(&resource_id(raw)?)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let found = blocking(move || {
        keys.into_iter()
            .map(|key| Ok((key.resource.clone(), store.messages(&key, range, limit, now)?)))
            .collect::<Result<Vec<_>, StorageError>>()
    })
    .await?;
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (resource, messages)) in found.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(serde_json::to_string(&**resource).unwrap_or_default().as_bytes());
        out.push(b':');
        out.extend_from_slice(&json_array(messages));
    }
    out.push(b'}');
    Ok(json_response(out))
}
