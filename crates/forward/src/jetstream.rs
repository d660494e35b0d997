//! The NATS JetStream sink: each record is published alone to
//! `{subject_prefix}.{domain}.{resource}.{channel}` (each part escaped by [`subject_token`]) with
//! header `Nats-Msg-Id` = the record's `id`, so the stream drops a resend within its duplicate
//! window; the body is the record's JSON ([`crate::record::record_json`]). A batch is delivered
//! once JetStream acknowledged (PubAck) every record of it.
//!
//! Order: a resource's next record is published only after the stream acknowledged the one
//! before, so a lost publish is never overtaken by a later one of the same resource, whatever the
//! connection does; the batch's resources are published side by side. Publish acks in flight
//! are bounded per sink (`max_in_flight`, the publisher waits for a free slot). A failed or
//! unacknowledged publish makes the whole batch retried with back-off (a resend of a record the
//! stream has is dropped as a duplicate); a record larger than the server's `max_payload` parks
//! its batch. The connection is made at the first batch and re-established by the client;
//! with `create_stream` the stream (file storage, subjects `{subject_prefix}.>`) is created when
//! missing, before the first publish of each connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::context::{Context, ContextBuilder, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use futures_util::stream::{FuturesUnordered, StreamExt};
use switchyard_storage::OutboxRecord;
use tokio::sync::Mutex;

use crate::record::record_json;
use crate::{ForwardError, Outcome, Sink};

/// How to authenticate to the NATS server.
#[derive(Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => f.debug_struct("UserPassword").field("user", user).finish(),
            NatsAuth::Token(_) => f.write_str("Token"),
        }
    }
}

/// What a JetStream sink publishes to and how.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// `nats://host:port` (several separated by commas); `tls://host:port` requires TLS.
    pub url: String,
    pub auth: NatsAuth,
    /// PEM roots trusted beside the system's for the server's certificate; setting it
    /// requires TLS whatever the URL's scheme.
    pub ca_file: Option<PathBuf>,
    /// Dot-separated subject tokens the records' subjects start with.
    pub subject_prefix: String,
    /// The stream that takes the subjects; created when missing if `create_stream`.
    pub stream: String,
    pub create_stream: bool,
    /// Most publishes awaiting their PubAck at once, over all of the sink's lanes.
    pub max_in_flight: usize,
    /// How long a connection attempt, a stream request or one PubAck may take.
    pub timeout: Duration,
}

/// A NATS JetStream stream; see the [module docs](self).
#[derive(Debug)]
pub struct JetStreamSink {
    config: JetStreamConfig,
    /// The connection's context and whether the stream is known to exist on it.
    context: Mutex<Option<(Context, bool)>>,
}

/// Escapes one subject token: ASCII letters, digits, `-` and `_` stay; every other byte
/// (`.`, `*`, `>`, `%`, whitespace, non-ASCII UTF-8) becomes `%HH` (upper-case hex), and an empty
/// text becomes `%`. Distinct texts give distinct tokens: `acme.example.com` → `acme%2Eexample%2Ecom`.
pub fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `prefix` is one or more dot-separated subject tokens without wildcards or whitespace.
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 128
        && prefix
            .split('.')
            .all(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>'))
}

/// Whether `name` can name a stream: 1–64 letters, digits, `-` or `_`.
fn valid_stream(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl JetStreamSink {
    /// Checks `config`; nothing is connected until the first batch.
    pub fn new(config: JetStreamConfig) -> Result<Self, ForwardError> {
        let bad = |what: String| Err(ForwardError::Config(what));
        if config.url.is_empty() || config.url.split(',').any(|u| u.trim().is_empty()) {
            return bad(format!("jetstream url {:?}: give nats://host:port", config.url));
        }
        if !valid_prefix(&config.subject_prefix) {
            return bad(format!(
                "jetstream subject_prefix {:?}: dot-separated tokens without spaces, '*' or '>'",
                config.subject_prefix
            ));
        }
        if !valid_stream(&config.stream) {
            return bad(format!("jetstream stream {:?}: 1 to 64 letters, digits, '-' or '_'", config.stream));
        }
        if config.max_in_flight == 0 {
            return bad("jetstream max_in_flight must be at least 1".into());
        }
        if let Some(ca_file) = &config.ca_file {
            crate::tls::ca_certificates(ca_file).map_err(|why| ForwardError::Config(format!("jetstream {why}")))?;
        }
        Ok(JetStreamSink { config, context: Mutex::new(None) })
    }

    /// The subject a record is published to.
    pub fn subject(&self, record: &OutboxRecord) -> String {
        format!(
            "{}.{}.{}.{}",
            self.config.subject_prefix,
            subject_token(&record.tenant),
            subject_token(&record.resource),
            record.channel.as_str()
        )
    }

    /// The connection's context, connecting and making sure of the stream when needed.
    async fn context(&self) -> Result<Context, String> {
        let mut slot = self.context.lock().await;
        if slot.is_none() {
            let options = match &self.config.auth {
                NatsAuth::None => async_nats::ConnectOptions::new(),
                NatsAuth::UserPassword { user, password } => {
                    async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
                }
                NatsAuth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            };
            let tls_required = self.config.ca_file.is_some()
                || self.config.url.split(',').any(|u| u.trim_start().starts_with("tls://"));
            let mut options = options.require_tls(tls_required);
            if let Some(ca_file) = &self.config.ca_file {
                options = options.add_root_certificates(ca_file.clone());
            }
            let client = options
                .connection_timeout(self.config.timeout)
                .request_timeout(Some(self.config.timeout))
                .connect(self.config.url.as_str())
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.config.url))?;
            let context = ContextBuilder::new()
                .timeout(self.config.timeout)
                .max_ack_inflight(self.config.max_in_flight)
                .backpressure_on_inflight(true)
                .build(client);
            *slot = Some((context, !self.config.create_stream));
        }
        let (context, stream_ready) = slot.as_mut().expect("connected above");
        if !*stream_ready {
            let config = stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                storage: stream::StorageType::File,
                ..Default::default()
            };
            context
                .get_or_create_stream(config)
                .await
                .map_err(|e| format!("cannot find or create stream {}: {e}", self.config.stream))?;
            *stream_ready = true;
        }
        Ok(context.clone())
    }

    /// After a failure that says the stream is gone, look for it (or create it) again.
    async fn stream_missing(&self) {
        if self.config.create_stream
            && let Some((_, ready)) = self.context.lock().await.as_mut()
        {
            *ready = false;
        }
    }

    /// Publishes one resource's records in order, each after the previous one's PubAck.
    async fn publish_in_order(&self, context: &Context, records: &[&OutboxRecord]) -> Outcome {
        for record in records {
            let message = PublishMessage::build().message_id(record.id()).payload(record_json(record).into());
            // The whole of it, waiting for a free ack slot included, within one timeout.
            let publish = async {
                match context.send_publish(self.subject(record), message).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                }
            };
            let Ok(published) = tokio::time::timeout(self.config.timeout, publish).await else {
                let reason = format!("no PubAck for {} within {:?}", record.id(), self.config.timeout);
                return Outcome::Retry { after: None, reason };
            };
            if let Err(e) = published {
                let reason = format!("publish of {} failed: {e}", record.id());
                return match e.kind() {
                    PublishErrorKind::MaxPayloadExceeded => Outcome::Park { reason },
                    PublishErrorKind::StreamNotFound => {
                        self.stream_missing().await;
                        Outcome::Retry { after: None, reason }
                    }
                    _ => Outcome::Retry { after: None, reason },
                };
            }
        }
        Outcome::Delivered
    }
}

impl Sink for JetStreamSink {
    async fn deliver(&self, records: &[OutboxRecord]) -> Outcome {
        let context = match tokio::time::timeout(self.config.timeout * 2, self.context()).await {
            Ok(Ok(context)) => context,
            Ok(Err(reason)) => return Outcome::Retry { after: None, reason },
            Err(_) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("no connection within {:?}", self.config.timeout * 2),
                };
            }
        };
        let mut by_resource: HashMap<(&str, &str), Vec<&OutboxRecord>> = HashMap::new();
        for record in records {
            by_resource.entry((&record.tenant, &record.resource)).or_default().push(record);
        }
        let mut runs: FuturesUnordered<_> =
            by_resource.values().map(|run| self.publish_in_order(&context, run)).collect();
        let mut outcome = Outcome::Delivered;
        while let Some(done) = runs.next().await {
            outcome = match (outcome, done) {
                (Outcome::Retry { after, reason }, _) | (_, Outcome::Retry { after, reason }) => {
                    Outcome::Retry { after, reason }
                }
                (Outcome::Park { reason }, _) | (_, Outcome::Park { reason }) => Outcome::Park { reason },
                (Outcome::Delivered, Outcome::Delivered) => Outcome::Delivered,
            };
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_storage::data::Channel;

    use super::*;

    fn config() -> JetStreamConfig {
        JetStreamConfig {
            url: "nats://127.0.0.1:4222".into(),
            auth: NatsAuth::None,
            ca_file: None,
            subject_prefix: "switchyard".into(),
            stream: "SWITCHYARD".into(),
            create_stream: true,
            max_in_flight: 256,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn tokens_are_escaped_and_distinct() {
        for (text, token) in [
            ("acme.example.com", "acme%2Eexample%2Ecom"),
            ("sensor-1_a", "sensor-1_a"),
            ("a b*c>d", "a%20b%2Ac%3Ed"),
            ("50%", "50%25"),
            ("é", "%C3%A9"),
            ("", "%"),
        ] {
            assert_eq!(subject_token(text), token, "{text:?}");
        }
        assert_ne!(subject_token("a.b"), subject_token("a%2Eb"), "the escape character is escaped too");
    }

    #[test]
    fn subjects_name_tenant_resource_and_channel() {
        let sink = JetStreamSink::new(config()).unwrap();
        let record = OutboxRecord {
            seq: 7,
            at: 0,
            tenant: "acme.example".into(),
            resource: "room 1".into(),
            channel: Channel::Commands,
            body: Bytes::new(),
        };
        assert_eq!(sink.subject(&record), "switchyard.acme%2Eexample.room%201.commands");
    }

    #[test]
    fn configuration_is_checked() {
        assert!(JetStreamSink::new(config()).is_ok());
        assert!(JetStreamSink::new(JetStreamConfig { subject_prefix: "a.b".into(), ..config() }).is_ok());
        for prefix in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            let bad = JetStreamConfig { subject_prefix: prefix.into(), ..config() };
            assert!(JetStreamSink::new(bad).is_err(), "prefix {prefix:?}");
        }
        for stream in ["", "a.b", "a b", "a*"] {
            assert!(JetStreamSink::new(JetStreamConfig { stream: stream.into(), ..config() }).is_err(), "{stream:?}");
        }
        assert!(JetStreamSink::new(JetStreamConfig { max_in_flight: 0, ..config() }).is_err());
        assert!(JetStreamSink::new(JetStreamConfig { url: String::new(), ..config() }).is_err());
    }

    #[test]
    fn a_ca_file_without_a_certificate_refuses_the_start() {
        let dir = std::env::temp_dir().join(format!("sy-js-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbled = dir.join("garbled.pem");
        std::fs::write(&garbled, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        for path in [garbled, missing] {
            let err = JetStreamSink::new(JetStreamConfig { ca_file: Some(path.clone()), ..config() }).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("jetstream ca_file") && text.contains(&path.display().to_string()), "{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
