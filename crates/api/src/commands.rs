//! Commands over HTTP (SPEC §5), and the routes that share their paths with streams.
//!
//! - `POST /resources/{id}/commands` — one JSON object or an array, for resource `id`: normalized
//!   by the pipeline like an event but with no metrics, delivered to MQTT subscribers of
//!   `{domain}/resources/{id}/commands` (QoS 1; a device offline with a persistent session gets
//!   it when it returns), to stream listeners, and stored in the resource's commands history;
//!   answered once durable, as `POST /resources/{id}/events` is. `ttl` (same syntax) expires
//!   the stored command and becomes the MQTT 5.0 message expiry of its delivery. Applications
//!   only (`Basic apiKey:apiSecret`): a device's token is 403.
//! - `GET /resources/{id}/commands?limit=` — the commands history, newest first (`limit`
//!   *default* 100, at most 1000); an application, or the device itself with its token. With
//!   `Accept: text/event-stream` or `application/x-ndjson` it streams instead (`stream`).
//! - `GET /resources/{id}/events` — streams only (406 otherwise); `GET /messages` — the tenant's
//!   stream.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use switchyard_identity::DeviceIdentity;
use switchyard_identity::topic::{Channel as TopicChannel, TenantTopic};
use switchyard_pipeline::Options;
use switchyard_storage::data::{Channel, TimeRange};
use utoipa::IntoParams;

use crate::ApiState;
use crate::auth::DataAuth;
use crate::data::{blocking, now_ms, path_id};
use crate::error::ApiError;
use crate::ingest::{ingest_expiring, refused};
use crate::stream::{self, Format, not_acceptable};

/// Commands listed when `limit` is not given, and the most in one answer.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The commands and stream routes; command bodies up to `max_body` bytes.
pub fn routes(max_body: usize) -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/resources/{id}/commands", get(history).post(send))
        .route("/resources/{id}/events", get(events))
        .route("/messages", get(stream::firehose))
        .layer(DefaultBodyLimit::max(max_body))
}

/// Send a command to resource `id` (an object or an array of objects).
#[utoipa::path(post, path = "/resources/{id}/commands", tag = "commands",
    params(
        ("id" = String, Path, description = "resource id"),
        ("store" = Option<bool>, Query, description = "false: deliver only, not kept in the history"),
        ("forward" = Option<bool>, Query, description = "false: not forwarded"),
        ("ttl" = Option<String>, Query, description = "expiry of the stored command and of its MQTT delivery"),
    ),
    request_body(content = serde_json::Value, description = "a JSON object or an array of objects"),
    responses(
        (status = 200, description = "`{\"message\", \"content\": normalized input}`, once stored", body = serde_json::Value),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn send(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    let DataAuth::App(app) = &caller else {
        return Err(ApiError::Forbidden("a device may not send commands".into()));
    };
    let domain = app.domain.clone();
    let options = Options::from_query(query.as_deref().unwrap_or_default()).map_err(refused)?;
    let body = body?;
    let now = now_ms();
    let expires_at = options.expires_at(now).and_then(|at| u64::try_from(at).ok());
    let pipeline = &state.ingest.pipeline;
    let normalized =
        pipeline.http_on(Channel::Commands, &domain, Some(&resource), &body, options, now).map_err(refused)?;
    let device = DeviceIdentity { domain: domain.clone(), resource };
    let topic: Arc<str> = Arc::from(TenantTopic::channel(&device, TopicChannel::Commands).full());
    let live = vec![(topic, normalized.payload.clone())];
    ingest_expiring(&state, &domain, live, expires_at, normalized).await
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// At most this many commands (*default* 100, at most 1000).
    limit: Option<usize>,
}

/// The commands history, newest first; or, with a streaming `Accept`, the live commands.
#[utoipa::path(get, path = "/resources/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "resource id"), HistoryParams),
    responses(
        (status = 200, description = "commands newest first as stored; or SSE / NDJSON with a streaming Accept", body = Vec<serde_json::Value>),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn history(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<HistoryParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    if let Some(format) = Format::from_headers(&headers) {
        return stream::resource(&state, &caller, &resource, Channel::Commands, format, &headers).await;
    }
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        let details = vec![format!("limit: {limit}")];
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"), details));
    }
    let key = caller.read(&resource)?.of_channel(Channel::Commands);
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let messages = blocking(move || store.messages(&key, TimeRange::default(), limit, now)).await?;
    let mut out = Vec::with_capacity(2 + messages.iter().map(|m| m.body.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&m.body);
    }
    out.push(b']');
    Ok(([(CONTENT_TYPE, "application/json")], out).into_response())
}

/// A resource's events, live (SSE or NDJSON; 406 for other `Accept` values).
#[utoipa::path(get, path = "/resources/{id}/events", tag = "streams",
    params(("id" = String, Path, description = "resource id")),
    responses(
        (status = 200, description = "SSE (`id:` = sequence, `Last-Event-ID` resumes from the cache) or NDJSON of the resource's events as stored"),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 406, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn events(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    let format = Format::from_headers(&headers).ok_or_else(not_acceptable)?;
    stream::resource(&state, &caller, &resource, Channel::Events, format, &headers).await
}
