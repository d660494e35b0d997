//! The Device Hub API (SPEC §5), for a tenant's applications (`Authorization: Basic
//! apiKey:apiSecret`); everything is scoped to the caller's tenant.
//!
//! - `POST /devices {"id"?, "name"?, "metadata"?}` → 201 `{"resource", "key", "token",
//!   "expires"}` (a UUID when no id is given; the token lives the tenant's maximum lifetime);
//! - `GET /devices?limit=&after=` → `{"devices": [device, ...], "next": id | null}` (*default*
//!   100 per page, at most 1000; pass `next` as `after` for the next page);
//! - `GET`, `PATCH {"name"?, "metadata"?}`, `DELETE /devices/{id}`;
//! - `POST /devices/{id}/block`, `/unblock` (blocking closes live connections);
//! - `POST /devices/{id}/token?ttl=` → `{"token", "expires"}` (`ttl`: seconds or `15m`, `1h`,
//!   `1d`; *default* 1 h, at most the tenant's maximum);
//! - `POST /apikeys` → 201 `{"api_key", "api_secret"}`; `GET /apikeys`; `DELETE /apikeys/{id}`.
//!
//! A device is `{"resource", "name", "metadata", "created", "last_seen", "message_count",
//! "blocked"}` (times in epoch ms). Keys, tokens and secrets appear only in creation responses.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_hub::{DevicePatch, MAX_PAGE};
use switchyard_identity::{ApiKeyId, Device, ResourceId};

use crate::ApiState;
use crate::auth::AppAuth;
use crate::error::{ApiError, json_body};

/// Devices per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// Token lifetime when `ttl` is not given (capped at the tenant's maximum).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The Device Hub routes.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/devices", post(create).get(list))
        .route("/devices/{id}", get(show).patch(patch).delete(remove))
        .route("/devices/{id}/block", post(block))
        .route("/devices/{id}/unblock", post(unblock))
        .route("/devices/{id}/token", post(token))
        .route("/apikeys", post(create_api_key).get(list_api_keys))
        .route("/apikeys/{id}", axum::routing::delete(delete_api_key))
}

fn device_json(d: &Device) -> Value {
    json!({
        "resource": d.resource,
        "name": d.name,
        "metadata": d.metadata,
        "created": d.created_ms,
        "last_seen": d.last_seen_ms,
        "message_count": d.message_count,
        "blocked": d.blocked,
    })
}

fn resource_id(raw: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(raw).map_err(|e| ApiError::bad_request("invalid resource id", vec![e.to_string()]))
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<ResourceId, ApiError> {
    let Path(raw) = path?;
    resource_id(&raw)
}

/// A token lifetime: whole seconds (`3600`) or a number with `s`, `m`, `h` or `d` (`15m`, `1d`).
pub fn parse_ttl(raw: &str) -> Option<Duration> {
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale).map(Duration::from_secs)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    #[serde(alias = "resource")]
    id: Option<String>,
    name: Option<String>,
    metadata: Option<Value>,
}

async fn create(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewDevice = json_body(&body?)?;
    let id = req.id.as_deref().map(resource_id).transpose()?;
    let domain = app.domain;
    let (device, key, token) = state
        .hub
        .blocking(move |r| {
            let (device, key) = r.create_device(&domain, id, req.name, req.metadata)?;
            let ttl = r.tenant(&domain).map_or(DEFAULT_TTL, |e| e.tenant.max_token_lifetime);
            let token = r.issue_token(&domain, &device.resource, ttl)?;
            Ok((device, key, token))
        })
        .await?;
    let body = json!({
        "resource": device.resource,
        "key": key.expose_base64(),
        "token": token.token,
        "expires": token.expires_ms,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = query?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}"), vec![]));
    }
    let after = page.after.as_deref().map(resource_id).transpose()?;
    let domain = app.domain;
    let devices = state.hub.blocking(move |r| r.list_devices(&domain, after.as_ref(), limit)).await?;
    let next = (devices.len() == limit).then(|| devices.last().map(|d| d.resource.clone())).flatten();
    let devices: Vec<Value> = devices.iter().map(device_json).collect();
    Ok(Json(json!({"devices": devices, "next": next})))
}

async fn show(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    let domain = app.domain;
    let device = state.hub.blocking(move |r| r.device(&domain, &id)).await?;
    device.map(|d| Json(device_json(&d))).ok_or(ApiError::NotFound("device not found".into()))
}

async fn patch(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    let fields: serde_json::Map<String, Value> = json_body(&body?)?;
    let mut patch = DevicePatch::default();
    for (field, value) in fields {
        match (field.as_str(), value) {
            ("name", Value::Null) => patch.name = Some(None),
            ("name", Value::String(s)) => patch.name = Some(Some(s)),
            ("metadata", m) => patch.metadata = Some(m),
            (other, _) => {
                return Err(ApiError::bad_request(
                    "invalid patch",
                    vec![format!("{other}: only name (string or null) and metadata (object) can be changed")],
                ));
            }
        }
    }
    let domain = app.domain;
    let device = state.hub.blocking(move |r| r.patch_device(&domain, &id, patch)).await?;
    Ok(Json(device_json(&device)))
}

async fn remove(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path)?;
    state.hub.delete_device(&app.domain, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_blocked(
    app: AppAuth,
    state: ApiState,
    path: Result<Path<String>, PathRejection>,
    blocked: bool,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    let device = state.hub.set_blocked(&app.0.domain, &id, blocked).await?;
    Ok(Json(device_json(&device)))
}

async fn block(
    app: AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_blocked(app, state, path, true).await
}

async fn unblock(
    app: AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_blocked(app, state, path, false).await
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    ttl: Option<String>,
}

async fn token(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    let Query(q) = query?;
    let ttl = match q.ttl.as_deref() {
        Some(raw) => Some(parse_ttl(raw).ok_or_else(|| {
            ApiError::bad_request("invalid ttl", vec!["expected seconds, or a number with s, m, h or d".into()])
        })?),
        None => None,
    };
    let domain = app.domain;
    let issued = state
        .hub
        .blocking(move |r| {
            let max = r.tenant(&domain).map_or(DEFAULT_TTL, |e| e.tenant.max_token_lifetime);
            r.issue_token(&domain, &id, ttl.unwrap_or(DEFAULT_TTL.min(max)))
        })
        .await?;
    Ok(Json(json!({"token": issued.token, "expires": issued.expires_ms})))
}

async fn create_api_key(AppAuth(app): AppAuth, State(state): State<ApiState>) -> Result<Response, ApiError> {
    let domain = app.domain;
    let (key, secret) = state.hub.blocking(move |r| r.create_api_key(&domain)).await?;
    tracing::info!(domain = %key.domain, api_key = %key.id, by = %app.api_key_id, "api key created");
    let body = json!({"api_key": key.id, "api_secret": secret.expose_base64()});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_api_keys(AppAuth(app): AppAuth, State(state): State<ApiState>) -> Json<Value> {
    let keys: Vec<Value> = state
        .hub
        .registry()
        .api_keys(&app.domain)
        .iter()
        .map(|k| json!({"api_key": k.id, "created": k.created_ms}))
        .collect();
    Json(json!({"api_keys": keys}))
}

async fn delete_api_key(
    AppAuth(app): AppAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(raw) = path?;
    let id = ApiKeyId::parse(&raw).map_err(|e| ApiError::bad_request("invalid api key id", vec![e.to_string()]))?;
    state.hub.delete_api_key(&app.domain, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        for (raw, secs) in
            [("3600", Some(3600)), ("90s", Some(90)), ("15m", Some(900)), ("2h", Some(7200)), ("1d", Some(86_400))]
        {
            assert_eq!(parse_ttl(raw), secs.map(Duration::from_secs), "{raw}");
        }
        for bad in ["", "h", "1w", "-1", "1.5h", "1 h", "99999999999999999999d"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }
}
