//! `GET /demo`: one static page (`index.html`, compiled into the binary, no build step) that
//! shows protocol bridging from a browser: it opens the data WebSockets of one resource with
//! the credentials typed in (in the URLs, as browsers must), lists its events and commands
//! live, and sends commands and events with acknowledgements shown.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_FRAME_OPTIONS};
use axum::response::IntoResponse;

const PAGE: &str = include_str!("index.html");

/// The demo page (no credentials needed to load it; the sockets it opens ask for them).
pub async fn page() -> impl IntoResponse {
    // The page takes credentials: it must not be framed by another site.
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-cache"), (X_FRAME_OPTIONS, "DENY")], PAGE)
}
