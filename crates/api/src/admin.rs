//! The admin API (SPEC §7), `Authorization: Bearer ADMIN_TOKEN`:
//!
//! - `POST /admin/tenants {"domain", "require_registration"?, "max_token_lifetime_s"?}` → 201
//!   `{"domain", "master_key", "api_key", "api_secret"}` (the only time they are shown);
//! - `GET /admin/tenants` → `{"tenants": [tenant, ...]}`; `GET /admin/tenants/{domain}`;
//! - `PATCH /admin/tenants/{domain} {"require_registration"?, "max_token_lifetime_s"?}`;
//! - `POST /admin/tenants/{domain}/rotate-master-key` → `{"domain", "master_key",
//!   "previous_key_retires"}` (epoch ms);
//! - `POST /admin/tenants/{domain}/disable` and `/enable`; `DELETE /admin/tenants/{domain}` → 204.
//!
//! A tenant is `{"domain", "created", "disabled", "require_registration",
//! "max_token_lifetime_s", "previous_key_retires"}` — never a key.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_hub::{TenantSettings, tenant_credentials};
use switchyard_identity::{Domain, Tenant};

use crate::ApiState;
use crate::auth::AdminAuth;
use crate::error::{ApiError, json_body};

/// The admin routes.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/admin/tenants", post(create).get(list))
        .route("/admin/tenants/{domain}", get(show).patch(update).delete(remove))
        .route("/admin/tenants/{domain}/rotate-master-key", post(rotate))
        .route("/admin/tenants/{domain}/disable", post(disable))
        .route("/admin/tenants/{domain}/enable", post(enable))
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "domain": t.domain,
        "created": t.created_ms,
        "disabled": t.disabled,
        "require_registration": t.require_registration,
        "max_token_lifetime_s": t.max_token_lifetime.as_secs(),
        "message_cache": t.message_cache,
        "retention_s": t.retention_secs,
        "previous_key_retires": t.keys.previous.as_ref().map(|p| p.retire_at_ms),
    })
}

/// Parses a domain from user input, lowercased first.
fn domain(raw: &str) -> Result<Domain, ApiError> {
    Domain::parse(&raw.to_ascii_lowercase()).map_err(|e| ApiError::bad_request("invalid domain", vec![e.to_string()]))
}

fn path_domain(path: Result<Path<String>, PathRejection>) -> Result<Domain, ApiError> {
    let Path(raw) = path?;
    domain(&raw)
}

/// The settings a tenant can be created or patched with. `message_cache` and `retention_s` set
/// to 0 return to the server's defaults (`null` in answers).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    require_registration: Option<bool>,
    max_token_lifetime_s: Option<u64>,
    message_cache: Option<u32>,
    retention_s: Option<u64>,
}

impl Settings {
    fn typed(&self) -> TenantSettings {
        TenantSettings {
            require_registration: self.require_registration,
            max_token_lifetime: self.max_token_lifetime_s.map(Duration::from_secs),
            message_cache: self.message_cache.map(|n| (n > 0).then_some(n)),
            retention: self.retention_s.map(|s| (s > 0).then(|| Duration::from_secs(s))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    domain: Option<String>,
    require_registration: Option<bool>,
    max_token_lifetime_s: Option<u64>,
    message_cache: Option<u32>,
    retention_s: Option<u64>,
}

async fn create(
    _: AdminAuth,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewTenant = json_body(&body?)?;
    let raw = req.domain.ok_or_else(|| ApiError::bad_request("domain is required", vec![]))?;
    let domain = domain(&raw)?;
    let settings = Settings {
        require_registration: req.require_registration,
        max_token_lifetime_s: req.max_token_lifetime_s,
        message_cache: req.message_cache,
        retention_s: req.retention_s,
    }
    .typed();
    // Checked before the tenant exists, so a bad setting creates nothing.
    settings.validate()?;
    let provisioned = state
        .hub
        .blocking(move |r| {
            let p = r.create_tenant(domain)?;
            if settings != TenantSettings::default() {
                r.update_tenant_settings(&p.tenant.domain, &settings)?;
            }
            Ok(p)
        })
        .await?;
    tracing::info!(domain = %provisioned.tenant.domain, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant_credentials(&provisioned))).into_response())
}

async fn list(_: AdminAuth, State(state): State<ApiState>) -> Json<Value> {
    let tenants: Vec<Value> = state.hub.registry().tenants().iter().map(tenant_json).collect();
    Json(json!({"tenants": tenants}))
}

async fn show(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = path_domain(path)?;
    let entry = state.hub.registry().tenant(&domain).ok_or(ApiError::NotFound("tenant not found".into()))?;
    Ok(Json(tenant_json(&entry.tenant)))
}

async fn update(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = path_domain(path)?;
    let settings: Settings = json_body(&body?)?;
    let settings = settings.typed();
    let tenant = state.hub.blocking(move |r| r.update_tenant_settings(&domain, &settings)).await?;
    tracing::info!(domain = %tenant.domain, "tenant settings changed");
    Ok(Json(tenant_json(&tenant)))
}

async fn rotate(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = path_domain(path)?;
    let (key, retires) = state.hub.rotate_master_key(&domain).await?;
    Ok(Json(json!({
        "domain": domain,
        "master_key": key.expose_base64(),
        "previous_key_retires": retires,
    })))
}

async fn set_disabled(
    state: &ApiState,
    path: Result<Path<String>, PathRejection>,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let domain = path_domain(path)?;
    let tenant = state.hub.set_tenant_disabled(&domain, disabled).await?;
    Ok(Json(tenant_json(&tenant)))
}

async fn disable(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, path, true).await
}

async fn enable(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, path, false).await
}

async fn remove(
    _: AdminAuth,
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let domain = path_domain(path)?;
    state.hub.delete_tenant(&domain).await?;
    Ok(StatusCode::NO_CONTENT)
}
