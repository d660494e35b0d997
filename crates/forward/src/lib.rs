//! Forwarding to a rule engine (SPEC §6): the durable outbox ([`OutboxStore`]) read by one task
//! per sink, from the sink's cursor, at least once and in order per resource.
//!
//! A sink task ([`runner`]) reads records in sequence order and hands each to one of its lanes
//! by resource (a hash of tenant and resource), so one resource's records always take the same
//! lane, in order, while other resources' batches go out beside them. A lane sends one batch at
//! a time and retries it with back-off ([`backoff`]) until the sink takes it or parks it; the
//! cursor then moves to the last record below which every record is done, durably. A crash
//! resends what was sent after the cursor last moved: receivers drop duplicates by `id`.
//!
//! Sinks: [`webhook`] (batched, signed HTTP POST) and [`jetstream`] (one NATS JetStream publish
//! per record, deduplicated by `Nats-Msg-Id`, acknowledged by PubAck). Lag per sink (records and seconds), delivered,
//! parked and retried counts go to the `metrics` recorder (`switchyard_forward_*`).

pub mod backoff;
pub mod jetstream;
pub mod record;
pub mod runner;
pub mod sign;
pub mod tls;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchyard_storage::{OutboxRecord, OutboxStore};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use jetstream::{JetStreamConfig, JetStreamSink, NatsAuth};
pub use runner::{Clock, RunConfig};
pub use webhook::WebhookSink;

/// Why forwarding could not be set up or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("invalid forwarding configuration: {0}")]
    Config(String),
    #[error("no forwarding sink named {0:?}")]
    UnknownSink(String),
    #[error("outbox: {0}")]
    Storage(String),
    #[error("the forwarder is shutting down")]
    Stopped,
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sink has every record of the batch.
    Delivered,
    /// Try again later, after at least `after` if the sink said so.
    Retry { after: Option<Duration>, reason: String },
    /// The sink refused the batch for good: it is counted, logged and not sent again.
    Park { reason: String },
}

/// Somewhere records go. `deliver` is called for one batch at a time per lane, again after a
/// retry; it must not take longer than its own timeout.
pub trait Sink: Send + Sync + 'static {
    fn deliver(&self, records: &[OutboxRecord]) -> impl Future<Output = Outcome> + Send;
}

/// A request to a running sink task.
#[derive(Debug)]
pub(crate) enum Control {
    /// Rewind to the records stored at or after `from` (epoch ms); answers the new cursor.
    Replay { from: i64, reply: oneshot::Sender<Result<u64, ForwardError>> },
}

/// The running sink tasks: replays go through here, so a replay and the task's own progress
/// never race.
#[derive(Debug, Clone, Default)]
pub struct Forwarder {
    sinks: Arc<HashMap<String, mpsc::Sender<Control>>>,
}

impl Forwarder {
    /// Registers `sinks` with the outbox (forgetting sinks no longer configured) and starts one
    /// task per sink on `tasks`, each stopping when `shutdown` is cancelled. Also trims what
    /// every sink acknowledged once it is older than `config.retain`.
    pub fn start(
        outbox: Arc<dyn OutboxStore>,
        sinks: Vec<(String, SinkKind)>,
        config: RunConfig,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Forwarder, ForwardError> {
        let names: Vec<&str> = sinks.iter().map(|(name, _)| name.as_str()).collect();
        outbox.set_sinks(&names).map_err(|e| ForwardError::Storage(e.to_string()))?;
        let mut handles = HashMap::new();
        for (name, kind) in sinks {
            let (tx, rx) = mpsc::channel(8);
            handles.insert(name.clone(), tx);
            let outbox = Arc::clone(&outbox);
            let shutdown = shutdown.clone();
            let config = config.clone();
            match kind {
                SinkKind::Webhook(sink) => {
                    tasks.spawn(runner::run(name, outbox, Arc::<WebhookSink>::from(sink), config, rx, shutdown));
                }
                SinkKind::JetStream(sink) => {
                    tasks.spawn(runner::run(name, outbox, Arc::<JetStreamSink>::from(sink), config, rx, shutdown));
                }
                SinkKind::Custom(sink) => {
                    tasks.spawn(runner::run(name, outbox, Arc::new(sink), config, rx, shutdown));
                }
            }
        }
        if !handles.is_empty() {
            tasks.spawn(runner::trim_loop(outbox, config.retain, config.clock, shutdown));
        }
        Ok(Forwarder { sinks: Arc::new(handles) })
    }

    /// The configured sinks' names.
    pub fn sink_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.sinks.keys().cloned().collect();
        names.sort();
        names
    }

    /// Sends `sink` again every record still in the outbox that was stored at or after `from`
    /// (epoch ms); returns the sink's new cursor.
    pub async fn replay(&self, sink: &str, from: i64) -> Result<u64, ForwardError> {
        let tx = self.sinks.get(sink).ok_or_else(|| ForwardError::UnknownSink(sink.to_string()))?;
        let (reply, answer) = oneshot::channel();
        tx.send(Control::Replay { from, reply }).await.map_err(|_| ForwardError::Stopped)?;
        answer.await.map_err(|_| ForwardError::Stopped)?
    }
}

/// A configured sink.
#[derive(Debug)]
pub enum SinkKind {
    Webhook(Box<WebhookSink>),
    JetStream(Box<JetStreamSink>),
    /// Any other [`Sink`] (tests, embedders).
    Custom(Box<dyn DynSink>),
}

/// A [`Sink`] behind a pointer (its future boxed).
pub trait DynSink: Send + Sync + 'static {
    fn deliver_boxed<'a>(
        &'a self,
        records: &'a [OutboxRecord],
    ) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
}

impl<S: Sink> DynSink for S {
    fn deliver_boxed<'a>(
        &'a self,
        records: &'a [OutboxRecord],
    ) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(self.deliver(records))
    }
}

impl Sink for Box<dyn DynSink> {
    async fn deliver(&self, records: &[OutboxRecord]) -> Outcome {
        (**self).deliver_boxed(records).await
    }
}

impl std::fmt::Debug for dyn DynSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynSink")
    }
}
