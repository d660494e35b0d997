//! After an `ingest` run: ask the broker's HTTP API how many points of one metric one device has
//! stored (`GET /resources/{id}/series/{metric}?aggregates=count` with the tenant's API key) and
//! compare with the events that device had acknowledged (every acknowledged point must be there). One HTTP/1.0 request on a plain socket
//! to the loopback target, so the load tool needs no HTTP client library.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest the check may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// Where the API listens and the application key that may read the tenant's data.
#[derive(Clone)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    /// `apiKey:apiSecret`.
    pub api_key: String,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// What to count.
#[derive(Debug, Clone)]
pub struct Check {
    pub resource: String,
    pub metric: &'static str,
    /// Time range of the device's events, `until` exclusive.
    pub from_ms: i64,
    pub until_ms: i64,
    /// Events the device had acknowledged.
    pub acknowledged: u64,
}

/// The outcome, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub resource: String,
    pub metric: &'static str,
    /// Points of that metric acknowledged to the device: every one must be stored.
    pub acknowledged: u64,
    /// Points the API counts: at least `acknowledged`; more when events still unacknowledged
    /// at the end of the run were stored after it.
    pub stored: u64,
}

/// Why the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the HTTP request failed")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected response: {0}")]
    Response(String),
}

/// Count the points of `check` through the API.
pub async fn count_points(http: &HttpTarget, check: &Check) -> Result<Verified, VerifyError> {
    let path = format!(
        "/resources/{}/series/{}?from={}&until={}&aggregates=count",
        check.resource,
        check.metric,
        check.from_ms,
        check.until_ms - 1
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(&http.api_key);
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nAccept: application/json\r\n\r\n",
        http.addr
    );
    let response = tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(http.addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    })
    .await
    .map_err(|_| VerifyError::Timeout(TIMEOUT))??;
    let stored = parse_count(&response)?;
    Ok(Verified { resource: check.resource.clone(), metric: check.metric, acknowledged: check.acknowledged, stored })
}

/// The sum of the count column of a series response (no rows: zero).
fn parse_count(response: &[u8]) -> Result<u64, VerifyError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| VerifyError::Response("no header end".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| VerifyError::Response("no status line".into()))?;
    if status != 200 {
        return Err(VerifyError::Status { status, body: body.chars().take(300).collect() });
    }
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| VerifyError::Response(format!("body is not JSON: {e}")))?;
    let rows = json["series"].as_array().ok_or_else(|| VerifyError::Response("no series array".into()))?;
    rows.iter()
        .map(|row| row.get(1).and_then(serde_json::Value::as_f64).map(|c| c as u64))
        .sum::<Option<u64>>()
        .ok_or_else(|| VerifyError::Response("a row without a count".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_series() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"query\":{},\"series\":[[1000,42]]}";
        assert_eq!(parse_count(ok).unwrap(), 42);
        let none = b"HTTP/1.1 200 OK\r\n\r\n{\"query\":{},\"series\":[]}";
        assert_eq!(parse_count(none).unwrap(), 0);
        let denied = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":\"x\"}";
        assert!(matches!(parse_count(denied), Err(VerifyError::Status { status: 401, .. })));
        assert!(parse_count(b"garbage").is_err());
        assert!(parse_count(b"HTTP/1.1 200 OK\r\n\r\n{\"series\":[[1]]}").is_err());
    }
}
