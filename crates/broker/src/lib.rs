//! The broker core. One router owns every session, subscription, retained message and QoS
//! state; connections of every protocol reach it only through a [`Broker`] handle, sending
//! [`Event`]s and draining their [`Outbox`]. The core does no network I/O and knows storage only
//! as the [`SessionStore`] and [`DataStore`] traits.
//!
//! - [`auth`]: the authentication hook and the plain-MQTT policy.
//! - [`intake`]: the pipeline hook, asked about every PUBLISH, and where its data is stored.
//! - [`listen`]: live listeners of committed data (streams), fed by the committer.
//! - [`message`]: messages, deliveries and the event vocabulary.
//! - [`outbox`]: the bounded, non-blocking path from the core to a connection.
//! - `router`: the state owner and its event loop; `session`, `subtree`, `retained`, `trie`,
//!   `persist`: its parts.

pub mod auth;
mod config;
mod escaped;
pub mod intake;
pub mod listen;
pub mod message;
pub mod outbox;
mod persist;
mod retained;
mod router;
mod session;
mod subtree;
mod trie;

/// The subscription tree and retained store, for the fuzz targets only: not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::retained::Retained;
    pub use crate::subtree::{Entry, Removal, SessionId, SubTree};
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use switchyard_storage::data::Written;
use switchyard_storage::{DataStore, Ingest, SessionStore, StorageError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use auth::{AnonymousAuth, Authenticator, DenyRule, Namespace, Principal, Refusal, owner_key};
pub use config::{BrokerConfig, QueueFullPolicy};
pub use escaped::Escaped;
pub use intake::{DataPath, Intake, IntakeHook, NoData, NoIntake};
pub use listen::{Committed, Heard, Listener, Scope};
pub use message::{ConnId, ConnectRequest, Delivery, Event, IngestRequest, Message, WillAction, now_ms};
pub use outbox::{AckKind, Outbox, Outgoing};
pub use router::StorageStatus;

/// Counters kept by the core, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub sessions: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub qos0_dropped: AtomicU64,
    pub queue_refused: AtomicU64,
    pub oversized_dropped: AtomicU64,
    /// Retained messages not retained because their namespace was at `max_retained_messages`
    /// or `max_retained_bytes`.
    pub retained_refused: AtomicU64,
    pub storage_errors: AtomicU64,
    /// PUBLISHes the pipeline refused as invalid data (5.0: acknowledged with the reason code;
    /// 3.1.1: dropped).
    pub data_refused: AtomicU64,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot read stored broker state")]
    Load(#[source] StorageError),
    #[error("cannot start the storage committer thread")]
    Thread(#[source] std::io::Error),
}

/// The core went away (shut down); the connection should close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("broker is shut down")]
pub struct Closed;

/// Why [`Broker::ingest`] could not store data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The core is shut down, or its storage is gone: nothing was acknowledged.
    #[error("storage unavailable")]
    Unavailable,
}

/// A cheap, cloneable handle to the core: what every connection holds (one pointer, since
/// every idle connection carries it).
#[derive(Clone)]
pub struct Broker(Arc<Shared>);

/// What every handle shares.
struct Shared {
    events: mpsc::Sender<Event>,
    next_conn: AtomicU64,
    config: Arc<BrokerConfig>,
    auth: Arc<dyn Authenticator>,
    data: DataPath,
    stats: Arc<Stats>,
    storage: Arc<router::StorageHealth>,
    listeners: Arc<listen::Listeners>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("config", &self.0.config).finish_non_exhaustive()
    }
}

/// The router's task; await [`RouterTask::join`] after shutdown to know state is flushed.
#[derive(Debug)]
pub struct RouterTask(tokio::task::JoinHandle<()>);

impl RouterTask {
    /// Wait for the router to finish its final flush. False when it panicked.
    pub async fn join(self) -> bool {
        let ok = self.0.await.is_ok();
        if !ok {
            tracing::error!("router task panicked");
        }
        ok
    }
}

impl Broker {
    /// Load stored state and start the router as a task of the current tokio runtime (so
    /// handing events between connections and the router is a task switch, not a thread
    /// wake-up). It runs until `shutdown` is cancelled, then publishes due wills, tells
    /// clients, flushes storage and ends.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(
        config: BrokerConfig,
        store: Arc<dyn SessionStore>,
        auth: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> Result<(Broker, RouterTask), BrokerError> {
        Broker::start_with_data(config, store, auth, DataPath::default(), shutdown)
    }

    /// [`Broker::start`] with a data pipeline: `data.intake` is asked about every authorized
    /// PUBLISH, and what it returns to store is written to `data.store` in the commit that
    /// acknowledges it.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start_with_data(
        config: BrokerConfig,
        store: Arc<dyn SessionStore>,
        auth: Arc<dyn Authenticator>,
        data: DataPath,
        shutdown: CancellationToken,
    ) -> Result<(Broker, RouterTask), BrokerError> {
        let config = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let snapshot = store.load().map_err(BrokerError::Load)?;
        let restored = snapshot.sessions.len();
        let mut router = router::Router::new(
            Arc::clone(&config),
            Arc::clone(&auth),
            Arc::clone(&store),
            Arc::clone(&data.store),
            Arc::clone(&stats),
        )
        .map_err(BrokerError::Thread)?;
        router.restore(snapshot);
        tracing::info!(sessions = restored, "broker state loaded");
        let storage = Arc::clone(router.storage_health());
        let listeners = Arc::clone(router.listeners());
        let (tx, rx) = mpsc::channel(config.event_queue);
        let task = tokio::spawn(router.run(rx, shutdown));
        let shared = Shared { events: tx, next_conn: AtomicU64::new(1), config, auth, data, stats, storage, listeners };
        let broker = Broker(Arc::new(shared));
        Ok((broker, RouterTask(task)))
    }

    /// Send an event to the core, waiting while its queue is full.
    pub async fn send(&self, event: Event) -> Result<(), Closed> {
        self.0.events.send(event).await.map_err(|_| Closed)
    }

    /// Close every live connection of `owner` in `namespace` (everyone there when `None`) with
    /// DISCONNECT 0x98 (administrative action).
    pub async fn kick(&self, namespace: Namespace, owner: Option<Arc<str>>) -> Result<(), Closed> {
        self.send(Event::Kick { namespace, owner }).await
    }

    /// Delete everything the core keeps for `namespace` (a deleted tenant): its connections are
    /// closed with DISCONNECT 0x98, its sessions, subscriptions, queued messages and retained
    /// messages removed from memory and storage, and its data ([`DataStore::drop_tenant`] of the
    /// namespace's name, the tenant's domain) deleted. Returns once the removal is durable; `Closed`
    /// when the core or its storage is gone first.
    pub async fn drop_namespace(&self, namespace: Namespace) -> Result<(), Closed> {
        let (done, durable) = tokio::sync::oneshot::channel();
        self.send(Event::DropNamespace { namespace, done }).await?;
        durable.await.map_err(|_| Closed)
    }

    /// Deliver `live` messages (topic, payload) to their subscribers in `namespace` (as QoS 1
    /// messages from no session, not retained) and store `data` (normalized by the pipeline) in
    /// the same group commit as MQTT traffic. Returns once `data` is durable, with what became of each
    /// record (a repeated `messageId` is [`Written::Duplicate`]). While commits fail this waits
    /// (they are retried); callers wanting to fail fast check [`Broker::storage_status`] first.
    pub async fn ingest(
        &self,
        namespace: Namespace,
        live: Vec<(Arc<str>, Bytes)>,
        data: Vec<Ingest>,
    ) -> Result<Vec<Written>, IngestError> {
        self.ingest_expiring(namespace, live, None, data).await
    }

    /// [`Broker::ingest`] with live messages that expire at `expires_at_ms` (epoch ms; a
    /// command's `ttl`): 5.0 subscribers see the remaining message expiry interval, and a
    /// session offline until then never gets them.
    pub async fn ingest_expiring(
        &self,
        namespace: Namespace,
        live: Vec<(Arc<str>, Bytes)>,
        expires_at_ms: Option<u64>,
        data: Vec<Ingest>,
    ) -> Result<Vec<Written>, IngestError> {
        let (reply, written) = tokio::sync::oneshot::channel();
        let request = IngestRequest { namespace, live, expires_at_ms, data, reply };
        self.send(Event::Ingest(Box::new(request))).await.map_err(|_| IngestError::Unavailable)?;
        written.await.map_err(|_| IngestError::Unavailable)
    }

    /// Listen to the messages of `scope` as commits make them durable (see [`listen`]): events
    /// and commands, each with its per-resource sequence, stored data only. The listener's queue
    /// holds `capacity` messages; a listener that falls behind by more is told how many it
    /// missed ([`Heard::Missed`]) and never slows intake or other listeners. Dropping the
    /// listener unregisters it; it ends (`None`) at shutdown or when its tenant is deleted.
    pub fn listen(&self, scope: Scope, capacity: usize) -> Listener {
        self.0.listeners.listen(scope, capacity)
    }

    /// How many listeners are registered.
    pub fn listener_count(&self) -> usize {
        self.0.listeners.count()
    }

    /// Whether storage keeps up: commits failing (and retried) or the committer gone.
    pub fn storage_status(&self) -> StorageStatus {
        self.0.storage.status()
    }

    /// Server shutdown, first step: close every connection with DISCONNECT 0x8B (server
    /// shutting down) and refuse new ones, while the core keeps running to record how they
    /// ended. Connections hold no shutdown signal of their own; this is it.
    pub async fn close_all(&self) -> Result<(), Closed> {
        self.send(Event::CloseAll).await
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.0.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.0.config
    }

    pub fn auth(&self) -> &dyn Authenticator {
        &*self.0.auth
    }

    /// The pipeline hook connections ask about every authorized PUBLISH.
    pub fn intake(&self) -> &dyn IntakeHook {
        &*self.0.data.intake
    }

    /// The data store the core writes pipeline data to; readers (the HTTP API) share it.
    pub fn data_store(&self) -> &Arc<dyn DataStore> {
        &self.0.data.store
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }
}
