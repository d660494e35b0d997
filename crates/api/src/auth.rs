//! Who is calling: extractors that authenticate the `Authorization` header through the hub
//! (rate limited, counted and logged there) and admit one kind of caller — [`AdminAuth`] for
//! `/admin/...`, [`AppAuth`] (an API key, `Basic apiKey:apiSecret`) for the Device Hub.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchyard_identity::{AppIdentity, Credentials, Identity, parse_authorization};

use crate::ApiState;
use crate::error::ApiError;

/// Authenticates the request's `Authorization` header (absent: no credentials).
async fn identify(parts: &Parts, state: &ApiState) -> Result<Identity, ApiError> {
    let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let presented = match parts.headers.get(AUTHORIZATION) {
        None => Ok(Credentials::Anonymous),
        Some(value) => match value.to_str() {
            Ok(text) => parse_authorization(text),
            Err(_) => return Err(ApiError::Unauthorized),
        },
    };
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
    Ok(state.hub.authenticate(presented, limit_key.as_deref(), ip, "http").await?)
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
