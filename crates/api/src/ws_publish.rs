//! Data in over a WebSocket: `/resources/{id}/{events|commands}/publish` and `/socket`. Each
//! text (or binary) frame is one request body — a JSON object or an array of objects — run
//! through the same pipeline as `POST /resources/{id}/events` and handed to the core as an
//! HTTP ingest is (`Event::Ingest`), so it reaches MQTT subscribers, listeners and the store
//! alike. Every frame is answered, in order, once its messages are durable:
//! `{"type":"ack","frame":n,"message":"..."}`, or `{"type":"error","frame":n,"status":s,
//! "error":"...","details":[...]}` with the HTTP status the same body would get and details
//! naming the field (`[2].timestamp: ...` for the third message of an array). The connection
//! stays open after an error frame. `store`, `forward` and `ttl` of the upgrade URL apply to
//! every frame; commands are normalized as `POST /resources/{id}/commands` does (no metrics,
//! the commands history) and `ttl` is also their MQTT 5.0 message expiry.
//!
//! On `/socket` every message names its `resource` and may carry `"channel": "commands"`
//! (default `"events"`); `channel` is taken off before normalization, so it is neither stored nor
//! delivered. Bounds: a frame is at most `[pipeline] max_body` bytes (larger closes the socket
//! with 1009), at most [`MAX_IN_FLIGHT`] frames wait for their commit (the socket is not read
//! meanwhile), and the pipeline's limits apply to each frame as to a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value as Json, json};
use switchyard_broker::{Event, IngestRequest, Namespace, StorageStatus};
use switchyard_identity::topic::{Channel, TenantTopic};
use switchyard_identity::{DeviceIdentity, Domain, ResourceId};
use switchyard_pipeline::{ErrorKind, IntakeError, Normalized, Options};
use switchyard_storage::data::{self, Ingest, Written};

use crate::ApiState;
use crate::auth::DataAuth;
use crate::data::now_ms;

/// Frames of one socket waiting for their commit; the socket is not read while this many wait.
pub const MAX_IN_FLIGHT: usize = 64;

/// Where a publish socket's messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/resources/{id}/{channel}/publish`: every message is the path's resource's.
    Resource(ResourceId, Channel),
    /// `/socket`: every message names its `resource` and, optionally, its `channel`.
    Socket,
}

/// One publish socket's fixed context, checked before the upgrade.
pub struct Publisher {
    pub state: ApiState,
    pub caller: DataAuth,
    pub domain: Domain,
    pub target: Target,
    /// `store`, `forward`, `ttl` of the upgrade request, for every frame.
    pub options: Options,
}

/// A frame's refusal, as the client is told in an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub status: u16,
    pub error: String,
    pub details: Vec<String>,
}

impl FrameError {
    fn new(status: u16, error: impl Into<String>, details: Vec<String>) -> Self {
        FrameError { status, error: error.into(), details }
    }

    fn unavailable() -> Self {
        FrameError::new(503, "service unavailable", vec![])
    }

    fn json(&self, frame: u64) -> Json {
        json!({"type": "error", "frame": frame, "status": self.status, "error": self.error, "details": self.details})
    }

    /// The same refusal with each detail about message `index` of an array.
    fn at(mut self, index: Option<usize>) -> Self {
        if let Some(i) = index {
            for d in &mut self.details {
                *d = format!("[{i}].{d}");
            }
        }
        self
    }
}

impl From<IntakeError> for FrameError {
    fn from(e: IntakeError) -> Self {
        let status = match e.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unavailable => 503,
        };
        FrameError::new(status, e.error, e.details)
    }
}

/// What one frame sends to the core.
#[derive(Debug, Default)]
pub struct Batch {
    pub live: Vec<(Arc<str>, Bytes)>,
    pub data: Vec<Ingest>,
    /// Messages in the frame.
    pub count: usize,
    /// Whether the frame holds commands (their delivery expires with the socket's `ttl`).
    pub commands: bool,
}

type Answer = Pin<Box<dyn Future<Output = Json> + Send>>;

impl Publisher {
    /// Serve the socket until the client closes it or the server shuts down.
    pub async fn run(self, socket: WebSocket) {
        let (mut tx, mut rx) = socket.split();
        let mut answers: FuturesOrdered<Answer> = FuturesOrdered::new();
        let mut frames = 0u64;
        let close = loop {
            tokio::select! {
                Some(answer) = answers.next(), if !answers.is_empty() => {
                    if tx.send(Message::Text(answer.to_string().into())).await.is_err() {
                        return;
                    }
                }
                incoming = rx.next(), if answers.len() < MAX_IN_FLIGHT => {
                    let body = match incoming {
                        Some(Ok(Message::Text(text))) => Bytes::from(text),
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Err(e)) => match read_failure(&e) {
                            Some(close) => break close,
                            None => return,
                        },
                    };
                    frames += 1;
                    answers.push_back(self.frame(frames, &body).await);
                }
                () = self.state.shutdown.cancelled() => {
                    break CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                }
            }
        };
        let _ = tx.send(Message::Close(Some(close))).await;
    }

    /// Normalize frame `n` and send it to the core; the answer resolves once it is durable.
    async fn frame(&self, n: u64, body: &[u8]) -> Answer {
        let refuse = |e: FrameError| -> Answer { Box::pin(std::future::ready(e.json(n))) };
        let batch = match self.prepare(body) {
            Ok(batch) => batch,
            Err(e) => return refuse(e),
        };
        // Fail fast rather than wait behind commits being retried.
        if self.state.broker.storage_status() != StorageStatus::Ok {
            return refuse(FrameError::unavailable());
        }
        let (reply, written) = tokio::sync::oneshot::channel();
        let Batch { live, data, count, commands } = batch;
        let expires_at_ms =
            if commands { self.options.expires_at(now_ms()).and_then(|at| u64::try_from(at).ok()) } else { None };
        let request = IngestRequest { namespace: Namespace::tenant(&self.domain), live, expires_at_ms, data, reply };
        // Sent here, in frame order; only the wait for the commit overlaps with later frames.
        if self.state.broker.send(Event::Ingest(Box::new(request))).await.is_err() {
            return refuse(FrameError::unavailable());
        }
        Box::pin(async move {
            match written.await {
                Ok(written) => json!({"type": "ack", "frame": n, "message": summary(count, &written)}),
                Err(_) => FrameError::unavailable().json(n),
            }
        })
    }

    /// What frame `body` sends: its live messages and records, or why it is refused.
    pub fn prepare(&self, body: &[u8]) -> Result<Batch, FrameError> {
        match &self.target {
            Target::Resource(resource, channel) => {
                let normalized = self.normalize(resource, *channel, body)?;
                let mut batch = Batch::default();
                self.add(&mut batch, resource, *channel, normalized);
                Ok(batch)
            }
            Target::Socket => self.prepare_socket(body),
        }
    }

    /// `/socket`: each message on its own resource and channel, in frame order.
    fn prepare_socket(&self, body: &[u8]) -> Result<Batch, FrameError> {
        // serde_json stops at 128 levels, so this cannot recurse deeper; the pipeline then
        // applies its own depth limit to each message.
        let parsed: Json =
            serde_json::from_slice(body).map_err(|e| FrameError::new(400, "invalid JSON", vec![e.to_string()]))?;
        let (items, array) = match parsed {
            Json::Array(items) => (items, true),
            one => (vec![one], false),
        };
        let max = self.state.ingest.pipeline.limits().max_messages;
        if items.is_empty() {
            return Err(FrameError::new(400, "empty array", vec!["an array must hold at least one message".into()]));
        }
        if items.len() > max {
            let detail = format!("{} messages, at most {max} per request", items.len());
            return Err(FrameError::new(413, "too many messages", vec![detail]));
        }
        let mut batch = Batch::default();
        for (i, item) in items.into_iter().enumerate() {
            let index = array.then_some(i);
            let Json::Object(mut object) = item else {
                return Err(
                    FrameError::new(400, "not a JSON object", vec!["a message must be an object".into()]).at(index)
                );
            };
            let channel =
                take_channel(&mut object).map_err(|d| FrameError::new(400, "invalid channel", vec![d]).at(index))?;
            let resource = object
                .get("resource")
                .and_then(Json::as_str)
                .ok_or_else(|| "resource: missing; every message on /socket names its resource".to_owned())
                .and_then(|r| ResourceId::parse(r).map_err(|e| format!("resource: {e}")))
                .map_err(|d| FrameError::new(400, "invalid message", vec![d]).at(index))?;
            self.allowed(&resource, channel).map_err(|e| e.at(index))?;
            let body = serde_json::to_vec(&Json::Object(object)).unwrap_or_default();
            let normalized = self.normalize(&resource, channel, &body).map_err(|e| e.at(index))?;
            self.add(&mut batch, &resource, channel, normalized);
        }
        Ok(batch)
    }

    /// Whether the caller may send `channel` messages of `resource` (checked before the
    /// upgrade for the per-resource routes, per message on `/socket`).
    fn allowed(&self, resource: &ResourceId, channel: Channel) -> Result<(), FrameError> {
        match (&self.caller, channel) {
            (DataAuth::App(_), _) => Ok(()),
            (DataAuth::Device(d), Channel::Events) if &d.resource == resource => Ok(()),
            (DataAuth::Device(_), Channel::Events) => Err(FrameError::new(
                403,
                "a device may send only its own events",
                vec!["resource: not this device".into()],
            )),
            (DataAuth::Device(_), Channel::Commands) => {
                Err(FrameError::new(403, "sending commands needs an API key", vec!["channel: commands".into()]))
            }
        }
    }

    fn normalize(&self, resource: &ResourceId, channel: Channel, body: &[u8]) -> Result<Normalized, FrameError> {
        let pipeline = &self.state.ingest.pipeline;
        let channel = match channel {
            Channel::Events => data::Channel::Events,
            Channel::Commands => data::Channel::Commands,
        };
        Ok(pipeline.http_on(channel, &self.domain, Some(resource), body, self.options, now_ms())?)
    }

    fn add(&self, batch: &mut Batch, resource: &ResourceId, channel: Channel, normalized: Normalized) {
        let device = DeviceIdentity { domain: self.domain.clone(), resource: resource.clone() };
        let topic: Arc<str> = Arc::from(TenantTopic::channel(&device, channel).full());
        batch.live.push((topic, normalized.payload));
        batch.data.extend(normalized.data);
        batch.count += normalized.count;
        batch.commands |= channel == Channel::Commands;
    }
}

/// Takes `channel` off a `/socket` message: `Events` when absent.
fn take_channel(object: &mut Map<String, Json>) -> Result<Channel, String> {
    match object.remove("channel") {
        None => Ok(Channel::Events),
        Some(Json::String(c)) if c == "events" => Ok(Channel::Events),
        Some(Json::String(c)) if c == "commands" => Ok(Channel::Commands),
        Some(_) => Err("channel: must be \"events\" or \"commands\"".into()),
    }
}

/// The ack's message, as HTTP ingest words it.
fn summary(count: usize, written: &[Written]) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let duplicates = written.iter().filter(|w| **w == Written::Duplicate).count();
    let stored = written.len() - duplicates;
    match (written.len(), duplicates) {
        (0, _) => format!("{count} message{} delivered, not stored", plural(count)),
        (_, 0) => format!("{stored} message{} stored", plural(stored)),
        _ => format!("{stored} message{} stored, {duplicates} already stored (messageId)", plural(stored)),
    }
}

/// How to close after a failed read: 1009 for a frame over the limit; `None` when the socket is
/// broken and nothing more can be sent.
fn read_failure(e: &axum::Error) -> Option<CloseFrame> {
    let text = e.to_string();
    tracing::debug!(error = %text, "WebSocket read failed");
    text.contains("Space limit exceeded")
        .then(|| CloseFrame { code: close_code::SIZE, reason: "frame larger than max_body".into() })
}
