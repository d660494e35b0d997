//! The webhook sink: a batch is one HTTP/1.1 POST of a JSON array of records, signed as Standard
//! Webhooks v1 when secrets are set ([`crate::sign`]). Any 2xx acknowledges it; 408, 429, 5xx,
//! connection errors and timeouts are retried (honouring `Retry-After`); any other status parks
//! the batch (SPEC §6). `https://` receivers are checked against the system's roots and an
//! optional `ca_file` ([`crate::tls`]).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard_storage::OutboxRecord;

use crate::backoff::parse_retry_after;
use crate::record::batch_json;
use crate::sign::{Secret, signature_header};
use crate::{ForwardError, Outcome, Sink};

/// Most of a response body read (and thrown away) so the connection can be reused.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A webhook receiver; see the [module docs](self).
#[derive(Debug)]
pub struct WebhookSink {
    uri: hyper::Uri,
    secrets: Vec<Secret>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl WebhookSink {
    /// A sink posting to `url` (`http://` or `https://`), signing with each of `secrets` (at most
    /// two are expected: the current one and, during rotation, the next), giving up on a request
    /// after `timeout`. An `https://` receiver's certificate must chain to a root of the system's
    /// or of `ca_file`.
    pub fn new(url: &str, secrets: &[String], timeout: Duration, ca_file: Option<&Path>) -> Result<Self, ForwardError> {
        let uri: hyper::Uri = url.parse().map_err(|e| ForwardError::Config(format!("webhook url {url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(ForwardError::Config(format!(
                    "webhook url {url:?}: give http:// or https://host[:port]/path"
                )));
            }
        };
        if uri.host().is_none() {
            return Err(ForwardError::Config(format!("webhook url {url:?}: no host")));
        }
        if ca_file.is_some() && !https {
            return Err(ForwardError::Config(format!("webhook url {url:?}: ca_file needs an https:// url")));
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        // Only an https:// sink reads the system's roots; a plain one never makes a handshake.
        let tls = if https { crate::tls::client_config(ca_file)? } else { crate::tls::plain_only()? };
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(WebhookSink { uri, secrets: secrets.iter().map(|s| Secret::new(s)).collect(), timeout, client })
    }

    async fn post(&self, records: &[OutboxRecord]) -> Result<Outcome, String> {
        let body = batch_json(records);
        let (first, last) = match (records.first(), records.last()) {
            (Some(first), Some(last)) => (first.seq, last.seq),
            _ => return Ok(Outcome::Delivered),
        };
        let id = format!("batch_{first}_{last}");
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if !self.secrets.is_empty() {
            request = request.header("webhook-signature", signature_header(&self.secrets, &id, timestamp, &body));
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| format!("request failed: {}", chain(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read what the receiver said (bounded) so the connection goes back to the pool.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BODY).collect().await;
        Ok(classify(status.as_u16(), retry_after))
    }
}

/// An error and its sources, `: `-separated: hyper's own text ("client error (Connect)") does
/// not say why (a refused connection, an untrusted certificate).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a response status means for the batch (SPEC §6).
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry { after: retry_after, reason: format!("status {status}") },
        _ => Outcome::Park { reason: format!("status {status}") },
    }
}

impl Sink for WebhookSink {
    async fn deliver(&self, records: &[OutboxRecord]) -> Outcome {
        match tokio::time::timeout(self.timeout, self.post(records)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(reason)) => Outcome::Retry { after: None, reason },
            Err(_) => Outcome::Retry { after: None, reason: format!("no answer within {:?}", self.timeout) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_retry_or_park() {
        assert!(matches!(classify(200, None), Outcome::Delivered));
        assert!(matches!(classify(204, None), Outcome::Delivered));
        for retried in [408, 429, 500, 502, 503, 599] {
            assert!(matches!(classify(retried, None), Outcome::Retry { .. }), "{retried} is retried");
        }
        let after = Some(Duration::from_secs(3));
        assert!(matches!(classify(503, after), Outcome::Retry { after: Some(a), .. } if a == Duration::from_secs(3)));
        for parked in [300, 400, 401, 403, 404, 410, 413, 422] {
            assert!(matches!(classify(parked, None), Outcome::Park { .. }), "{parked} is parked");
        }
    }

    #[test]
    fn http_and_https_urls() {
        let timeout = Duration::from_secs(1);
        assert!(WebhookSink::new("http://127.0.0.1:9000/hook", &[], timeout, None).is_ok());
        assert!(WebhookSink::new("ftp://127.0.0.1:9000/hook", &[], timeout, None).is_err());
        assert!(WebhookSink::new("not a url", &[], timeout, None).is_err());
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(WebhookSink::new("https://127.0.0.1:9000/hook", &[], timeout, Some(missing)).is_err());
        assert!(WebhookSink::new("http://127.0.0.1:9000/hook", &[], timeout, Some(missing)).is_err());
    }
}
