//! [`ApiError`]: the one error type every handler returns, rendered as SPEC §5's
//! `{"error": "...", "details": [...]}` with its status code. Internal failures are logged here
//! with their details and answered plainly (503); secrets never reach an error.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_hub::{AuthFailure, HubError};
use switchyard_series::query::QueryError;
use switchyard_storage::StorageError;

/// Every error answer's body: `{"error": "...", "details": [...]}` (its schema in the OpenAPI
/// document; [`ApiError`] renders it).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: String,
    details: Vec<String>,
}

/// What went wrong, as the client is told.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed or invalid.
    BadRequest {
        /// One sentence.
        error: String,
        /// What exactly (field errors, parser messages).
        details: Vec<String>,
    },
    /// 401: missing or wrong credentials.
    Unauthorized,
    /// 403: the credentials are valid but not allowed here.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 406: a stream-only route asked for a format it does not serve.
    NotAcceptable(String),
    /// 409.
    Conflict(String),
    /// 413.
    TooLarge,
    /// 413, saying which limit the input exceeded.
    TooLargeInput { error: String, details: Vec<String> },
    /// 429, with how long to wait.
    TooManyRequests(Duration),
    /// 503: storage or another internal failure (logged where it was converted).
    Unavailable,
}

impl ApiError {
    /// A 400 with details.
    pub fn bad_request(error: impl Into<String>, details: Vec<String>) -> Self {
        ApiError::BadRequest { error: error.into(), details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::TooManyRequests(wait) => Some(wait.as_secs().max(1)),
            _ => None,
        };
        let (status, error, details) = match self {
            ApiError::BadRequest { error, details } => (StatusCode::BAD_REQUEST, error, details),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "bad or missing credentials".into(), vec![]),
            ApiError::Forbidden(e) => (StatusCode::FORBIDDEN, e, vec![]),
            ApiError::NotFound(e) => (StatusCode::NOT_FOUND, e, vec![]),
            ApiError::NotAcceptable(e) => (StatusCode::NOT_ACCEPTABLE, e, vec![]),
            ApiError::Conflict(e) => (StatusCode::CONFLICT, e, vec![]),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body is too large".into(), vec![]),
            ApiError::TooLargeInput { error, details } => (StatusCode::PAYLOAD_TOO_LARGE, error, details),
            ApiError::TooManyRequests(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too many failed authentications; retry later".into(), vec![])
            }
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable".into(), vec![]),
        };
        let mut response = (status, axum::Json(json!({"error": error, "details": details}))).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"switchyard\", Bearer"));
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            HubError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            HubError::Forbidden(why) => ApiError::Forbidden(why.to_owned()),
            HubError::Invalid(why) => ApiError::bad_request(why, vec![]),
            e => {
                tracing::error!(error = %e, "device hub operation failed");
                ApiError::Unavailable
            }
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Throttled(t) => ApiError::TooManyRequests(t.retry_after),
            AuthFailure::Refused(e) if e.is_refused_by_registry() => ApiError::Forbidden("not allowed".into()),
            AuthFailure::Unavailable(_) => ApiError::Unavailable,
            AuthFailure::Malformed(_) | AuthFailure::Missing | AuthFailure::Refused(_) => ApiError::Unauthorized,
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::bad_request("cannot read the request body", vec![r.body_text()])
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid query parameters", vec![r.body_text()])
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("invalid path", vec![r.body_text()])
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "data store read or delete failed");
        ApiError::Unavailable
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(why) => ApiError::bad_request("invalid series query", vec![why]),
            QueryError::Chunk(e) => {
                tracing::error!(error = %e, "stored chunk could not be decoded");
                ApiError::Unavailable
            }
        }
    }
}

/// Parses a JSON request body; an empty body is `T::default()`.
pub fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid JSON body", vec![e.to_string()]))
}
