//! Who is calling: extractors that authenticate the `Authorization` header through the hub
//! (rate limited, counted and logged there) and admit one kind of caller — [`AdminAuth`] for
//! `/admin/...`, [`AppAuth`] (an API key, `Basic apiKey:apiSecret`) for the Device Hub,
//! [`DataAuth`] (an API key, or a device's `Bearer` token for its own resource) for the data API.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchyard_identity::{
    AppIdentity, Credentials, CredentialsError, DeviceIdentity, Identity, ResourceId, parse_authorization,
};
use switchyard_storage::ResourceKey;

use crate::ApiState;
use crate::error::ApiError;

/// Authenticates the request's `Authorization` header (absent: no credentials).
async fn identify(parts: &Parts, state: &ApiState) -> Result<Identity, ApiError> {
    let presented = match parts.headers.get(AUTHORIZATION) {
        None => Ok(Credentials::Anonymous),
        Some(value) => match value.to_str() {
            Ok(text) => parse_authorization(text),
            Err(_) => return Err(ApiError::Unauthorized),
        },
    };
    authenticate(parts, state, presented, "http").await
}

/// Authenticates `presented` (from a header or, for WebSockets, the query) through the hub,
/// rate limited per source address and claimed identity.
pub async fn authenticate(
    parts: &Parts,
    state: &ApiState,
    presented: Result<Credentials, CredentialsError>,
    protocol: &'static str,
) -> Result<Identity, ApiError> {
    let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    // The per-username limit applies to the claimed key, device or admin.
    let limit_key = match &presented {
        Ok(Credentials::ApiKey { key_id, .. }) => Some(key_id.to_string()),
        Ok(Credentials::Bearer(token)) => {
            let d = token.claimed_device();
            Some(format!("{}/{}", d.domain, d.resource))
        }
        Ok(Credentials::Admin(_)) => Some("admin".to_owned()),
        _ => None,
    };
    Ok(state.hub.authenticate(presented, limit_key.as_deref(), ip, protocol).await?)
}

/// The server administrator (`Authorization: Bearer ADMIN_TOKEN`).
#[derive(Debug)]
pub struct AdminAuth;

impl FromRequestParts<ApiState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match identify(parts, state).await? {
            Identity::Admin => Ok(AdminAuth),
            _ => Err(ApiError::Forbidden("the admin API needs the admin token".into())),
        }
    }
}

/// An application of a tenant (`Authorization: Basic apiKey:apiSecret`).
#[derive(Debug)]
pub struct AppAuth(pub AppIdentity);

impl FromRequestParts<ApiState> for AppAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match identify(parts, state).await? {
            Identity::Application(app) => Ok(AppAuth(app)),
            _ => Err(ApiError::Forbidden("the Device Hub API needs an API key".into())),
        }
    }
}

/// A reader or writer of a tenant's stored data: an application (every resource of its tenant)
/// or a device (`Bearer` token; only its own resource, and only to read).
#[derive(Debug)]
pub enum DataAuth {
    App(AppIdentity),
    Device(DeviceIdentity),
}

impl DataAuth {
    /// The tenant's key for `resource`, if this caller may read it.
    pub fn read(&self, resource: &ResourceId) -> Result<ResourceKey, ApiError> {
        match self {
            DataAuth::App(app) => Ok(key(app.domain.as_str(), resource)),
            DataAuth::Device(d) if &d.resource == resource => Ok(key(d.domain.as_str(), resource)),
            DataAuth::Device(_) => Err(ApiError::Forbidden("a device may read only its own resource".into())),
        }
    }

    /// The tenant's key for `resource`, if this caller may delete its data (applications only).
    pub fn delete(&self, resource: &ResourceId) -> Result<ResourceKey, ApiError> {
        match self {
            DataAuth::App(app) => Ok(key(app.domain.as_str(), resource)),
            DataAuth::Device(_) => Err(ApiError::Forbidden("deleting data needs an API key".into())),
        }
    }
}

fn key(tenant: &str, resource: &ResourceId) -> ResourceKey {
    ResourceKey { tenant: tenant.into(), resource: resource.as_str().into() }
}

impl FromRequestParts<ApiState> for DataAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match identify(parts, state).await? {
            Identity::Application(app) => Ok(DataAuth::App(app)),
            Identity::Device(device) => Ok(DataAuth::Device(device)),
            _ => Err(ApiError::Forbidden("the data API needs an API key or a device token".into())),
        }
    }
}
