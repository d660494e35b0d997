//! Requests other web sites make a browser send: a browser attaches the Basic credentials it
//! cached for this server (after a `WWW-Authenticate` prompt) to requests any page makes it
//! send, so a state-changing request (any method but GET, HEAD and OPTIONS) or a WebSocket
//! handshake whose `Origin` is neither this server's own nor in `[http] allowed_origins` is
//! refused with 403 before it is authenticated. Requests without `Origin` (every non-browser
//! client), reads (another origin cannot see them without CORS) and `/mqtt` (MQTT over WebSocket
//! authenticates in CONNECT) pass. Allowed origins also
//! get CORS answers, so an application served from them can call the API with its own key.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, UPGRADE};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ApiError;

/// The origins besides the server's own that may make browsers send changes (`*`: any).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    any: bool,
    origins: Arc<[HeaderValue]>,
}

impl AllowedOrigins {
    /// Checks each of `origins`: `*`, or `scheme://host[:port]` as browsers send it (no path,
    /// no trailing slash).
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let mut any = false;
        let mut list = Vec::new();
        for origin in origins {
            if origin == "*" {
                any = true;
                continue;
            }
            let well_formed = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', ' ', '\t'])
            });
            match HeaderValue::from_str(origin) {
                Ok(value) if well_formed => list.push(value),
                _ => return Err(format!("allowed origin {origin:?}: give \"*\" or scheme://host[:port]")),
            }
        }
        Ok(AllowedOrigins { any, origins: list.into() })
    }

    fn permits(&self, origin: &HeaderValue) -> bool {
        self.any || self.origins.iter().any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }
}

/// `router` with the origin check and, when origins are allowed, CORS for them.
pub fn protect(router: Router, allowed: AllowedOrigins) -> Router {
    let cors = (allowed.any || !allowed.origins.is_empty()).then(|| {
        let origin = if allowed.any { AllowOrigin::any() } else { AllowOrigin::list(allowed.origins.iter().cloned()) };
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, HeaderName::from_static("last-event-id")])
    });
    let router = router.layer(from_fn_with_state(allowed, check));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn check(State(allowed): State<AllowedOrigins>, request: Request, next: Next) -> Response {
    // MQTT over WebSocket authenticates in its CONNECT packet, never with cached credentials,
    // and browser MQTT clients are served from anywhere.
    let Some(origin) = request.headers().get(ORIGIN).filter(|_| request.uri().path() != "/mqtt") else {
        return next.run(request).await;
    };
    let read = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !request.headers().contains_key(UPGRADE);
    if read || allowed.permits(origin) || same_origin(origin, &request) {
        return next.run(request).await;
    }
    ApiError::Forbidden("requests from this web origin are not allowed (see [http] allowed_origins)".into())
        .into_response()
}

/// Whether `origin` (`scheme://host[:port]`) names the host and port the request was sent to.
fn same_origin(origin: &HeaderValue, request: &Request) -> bool {
    let Some(authority) = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, authority)| authority) else {
        return false;
    };
    let host = match request.headers().get(HOST) {
        Some(host) => host.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    };
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app(allowed: &[&str]) -> Router {
        let allowed = AllowedOrigins::new(&allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let routes = Router::new()
            .route("/x", post(|| async { "posted" }).get(|| async { "read" }))
            .route("/mqtt", get(|| async { "mqtt" }));
        protect(routes, allowed)
    }

    async fn status(app: &Router, method: &str, origin: Option<&str>, upgrade: bool) -> StatusCode {
        status_of(app, "/x", method, origin, upgrade).await
    }

    async fn status_of(app: &Router, path: &str, method: &str, origin: Option<&str>, upgrade: bool) -> StatusCode {
        let mut request = Request::builder().method(method).uri(path).header(HOST, "broker.example:8080");
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        if upgrade {
            request = request.header(UPGRADE, "websocket");
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn foreign_origins_may_read_but_not_change() {
        let app = app(&[]);
        assert_eq!(status(&app, "POST", None, false).await, StatusCode::OK, "no Origin: not a browser");
        assert_eq!(status(&app, "POST", Some("http://broker.example:8080"), false).await, StatusCode::OK);
        assert_eq!(status(&app, "POST", Some("http://BROKER.example:8080"), false).await, StatusCode::OK);
        assert_eq!(status(&app, "POST", Some("https://evil.example"), false).await, StatusCode::FORBIDDEN);
        assert_eq!(status(&app, "POST", Some("http://broker.example:9090"), false).await, StatusCode::FORBIDDEN);
        assert_eq!(status(&app, "POST", Some("null"), false).await, StatusCode::FORBIDDEN);
        assert_eq!(status(&app, "GET", Some("https://evil.example"), false).await, StatusCode::OK, "a read");
        // A WebSocket handshake is a GET that changes things: refused from elsewhere.
        assert_eq!(status(&app, "GET", Some("https://evil.example"), true).await, StatusCode::FORBIDDEN);
        assert_eq!(status(&app, "GET", Some("http://broker.example:8080"), true).await, StatusCode::OK);
        // MQTT over WebSocket authenticates in CONNECT, never with cached credentials.
        assert_eq!(status_of(&app, "/mqtt", "GET", Some("https://evil.example"), true).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn allowed_origins_pass_and_get_cors_answers() {
        let app = app(&["https://app.example"]);
        assert_eq!(status(&app, "POST", Some("https://app.example"), false).await, StatusCode::OK);
        assert_eq!(status(&app, "POST", Some("https://evil.example"), false).await, StatusCode::FORBIDDEN);
        let preflight = Request::builder()
            .method("OPTIONS")
            .uri("/x")
            .header(ORIGIN, "https://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(preflight).await.unwrap();
        assert_eq!(response.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
        let any = super::tests::app(&["*"]);
        assert_eq!(status(&any, "POST", Some("https://evil.example"), false).await, StatusCode::OK);
    }

    #[test]
    fn origins_are_checked() {
        for bad in ["app.example", "https://app.example/", "ftp://app.example", "https://", "https://a b"] {
            assert!(AllowedOrigins::new(&[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(AllowedOrigins::new(&["*".into(), "http://127.0.0.1:3000".into()]).is_ok());
    }
}
