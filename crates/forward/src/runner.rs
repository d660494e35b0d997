//! One sink's task: read the outbox from the sink's cursor, spread records over lanes by
//! resource, move the cursor durably as lanes finish, answer replays. Lag goes to metrics.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_storage::{OutboxRecord, OutboxStore};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::{Control, ForwardError, Outcome, Sink};

/// How sink tasks read and send.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Batches in flight at once per sink, each for its own share of the resources.
    pub lanes: usize,
    /// Most records in one batch.
    pub batch_records: usize,
    /// Most bytes of messages in one batch (a single larger record still goes alone).
    pub batch_bytes: usize,
    /// Most records read and not yet done per sink.
    pub in_flight: usize,
    /// First retry delay, and the longest (also the most a `Retry-After` is honoured).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often an idle sink looks for new records, and a sink waiting on a busy lane updates
    /// its lag.
    pub poll: Duration,
    /// How long records every sink acknowledged stay for replays.
    pub retain: Duration,
    /// The time the lag in seconds and the retention are measured with.
    pub clock: Clock,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            lanes: 8,
            batch_records: 500,
            batch_bytes: 1024 * 1024,
            in_flight: 20_000,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            poll: Duration::from_millis(20),
            retain: Duration::from_secs(3600),
            clock: Clock::system(),
        }
    }
}

/// A time source in epoch milliseconds: the system clock, or one a test drives.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64))
    }

    /// The time `now` answers.
    pub fn new(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Runs a blocking store call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, switchyard_storage::StorageError> + Send + 'static,
) -> Result<T, ForwardError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| ForwardError::Storage(e.to_string())),
        Err(e) => Err(ForwardError::Storage(format!("store call failed: {e}"))),
    }
}

/// A batch done by a lane: its records' sequences.
struct Done {
    seqs: Vec<u64>,
}

/// The lanes of one run between two replays.
struct Lanes {
    senders: Vec<mpsc::Sender<Vec<OutboxRecord>>>,
    done: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Lanes {
    fn start<S: Sink>(name: &Arc<str>, sink: &Arc<S>, config: &RunConfig, shutdown: &CancellationToken) -> Lanes {
        let stop = shutdown.child_token();
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut senders = Vec::new();
        for _ in 0..config.lanes.max(1) {
            let (tx, rx) = mpsc::channel(2);
            senders.push(tx);
            let backoff = Backoff::new(config.backoff_base, config.backoff_max);
            tasks.spawn(lane(name.clone(), Arc::clone(sink), rx, done_tx.clone(), backoff, stop.clone()));
        }
        Lanes { senders, done, stop, tasks }
    }

    /// Stops the lanes; what they finished before stays in `done`.
    async fn stop(&mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Sends one lane's batches in order, each until the sink takes or parks it.
async fn lane<S: Sink>(
    name: Arc<str>,
    sink: Arc<S>,
    mut batches: mpsc::Receiver<Vec<OutboxRecord>>,
    done: mpsc::UnboundedSender<Done>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    let sink_label = name.to_string();
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            batch = batches.recv() => match batch { Some(batch) => batch, None => return },
        };
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = sink.deliver(&batch) => outcome,
            };
            match outcome {
                Outcome::Delivered => {
                    metrics::counter!("switchyard_forward_records_total", "sink" => sink_label.clone())
                        .increment(batch.len() as u64);
                    break;
                }
                Outcome::Park { reason } => {
                    metrics::counter!("switchyard_forward_parked_total", "sink" => sink_label.clone())
                        .increment(batch.len() as u64);
                    tracing::warn!(
                        sink = %name, first = batch[0].seq, records = batch.len(), %reason,
                        "forwarding sink refused a batch; parked, not retried"
                    );
                    break;
                }
                Outcome::Retry { after, reason } => {
                    metrics::counter!("switchyard_forward_retries_total", "sink" => sink_label.clone()).increment(1);
                    let delay = backoff.after(after);
                    tracing::debug!(sink = %name, %reason, ?delay, "forwarding sink failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        backoff.reset();
        if done.send(Done { seqs: batch.iter().map(|r| r.seq).collect() }).is_err() {
            return;
        }
    }
}

/// Which records are out and what the cursor may be.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Read and not done: sequence → when stored.
    outstanding: BTreeMap<u64, i64>,
    /// The last sequence read.
    read: u64,
}

impl Tracker {
    pub fn new(cursor: u64) -> Self {
        Tracker { outstanding: BTreeMap::new(), read: cursor }
    }

    pub fn sent(&mut self, seq: u64, at: i64) {
        self.outstanding.insert(seq, at);
        self.read = self.read.max(seq);
    }

    pub fn done(&mut self, seq: u64) {
        self.outstanding.remove(&seq);
    }

    /// Every record up to this one is done.
    pub fn acked(&self) -> u64 {
        match self.outstanding.first_key_value() {
            Some((seq, _)) => seq - 1,
            None => self.read,
        }
    }

    /// When the oldest record not done was stored.
    pub fn oldest(&self) -> Option<i64> {
        self.outstanding.first_key_value().map(|(_, at)| *at)
    }

    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }
}

/// The lane of a resource: the same for every record of it.
pub fn lane_of(record: &OutboxRecord, lanes: usize) -> usize {
    let mut hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    record.tenant.hash(&mut hasher);
    record.resource.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// Splits `records` (in sequence order) into batches per lane, each in sequence order and
/// within the batch limits.
pub fn batches(records: Vec<OutboxRecord>, config: &RunConfig) -> Vec<(usize, Vec<OutboxRecord>)> {
    let lanes = config.lanes.max(1);
    let mut open: Vec<(Vec<OutboxRecord>, usize)> = (0..lanes).map(|_| (Vec::new(), 0)).collect();
    let mut out = Vec::new();
    for record in records {
        let lane = lane_of(&record, lanes);
        let (batch, bytes) = &mut open[lane];
        if !batch.is_empty() && (batch.len() >= config.batch_records || *bytes + record.body.len() > config.batch_bytes)
        {
            out.push((lane, std::mem::take(batch)));
            *bytes = 0;
        }
        *bytes += record.body.len();
        batch.push(record);
    }
    for (lane, (batch, _)) in open.into_iter().enumerate() {
        if !batch.is_empty() {
            out.push((lane, batch));
        }
    }
    out
}

/// What a sink task knows of its progress, and the gauges that show it.
struct Progress {
    name: Arc<str>,
    outbox: Arc<dyn OutboxStore>,
    tracker: Tracker,
    /// The cursor as stored; the tracker's `acked` runs ahead of it until written.
    stored: u64,
    lag_records: metrics::Gauge,
    lag_seconds: metrics::Gauge,
    clock: Clock,
}

impl Progress {
    /// Takes in what the lanes finished and stores the cursor if it moved.
    async fn acknowledge(&mut self, done: &mut mpsc::UnboundedReceiver<Done>) -> Result<(), ForwardError> {
        while let Ok(done) = done.try_recv() {
            done.seqs.iter().for_each(|seq| self.tracker.done(*seq));
        }
        let acked = self.tracker.acked();
        if acked != self.stored {
            let store = Arc::clone(&self.outbox);
            let sink_name = self.name.clone();
            blocking(move || store.acknowledge(&sink_name, acked)).await?;
            self.stored = acked;
        }
        Ok(())
    }

    /// [`Self::acknowledge`], then sets the lag gauges from the outbox's head; answers the head
    /// (the last sequence stored).
    async fn settle(&mut self, done: &mut mpsc::UnboundedReceiver<Done>) -> u64 {
        if let Err(e) = self.acknowledge(done).await {
            tracing::warn!(sink = %self.name, error = %e, "cannot store forwarding cursor; retrying");
        }
        // A database-backed outbox answers `last` with a query: off the runtime as well.
        let store = Arc::clone(&self.outbox);
        let last = blocking(move || Ok(store.last())).await.unwrap_or(self.tracker.read);
        self.lag_records.set(last.saturating_sub(self.stored) as f64);
        let now = self.clock.now_ms();
        self.lag_seconds.set(self.tracker.oldest().map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0));
        last
    }
}

/// The task of sink `name`: runs until `shutdown`, leaving the cursor at what was done.
pub(crate) async fn run<S: Sink>(
    name: String,
    outbox: Arc<dyn OutboxStore>,
    sink: Arc<S>,
    config: RunConfig,
    mut control: mpsc::Receiver<Control>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = Arc::from(name);
    let mut failures = Backoff::new(config.backoff_base, config.backoff_max);
    let stored = loop {
        let store = Arc::clone(&outbox);
        let sink_name = name.clone();
        match blocking(move || store.cursor(&sink_name)).await {
            Ok(Some(cursor)) => break cursor,
            Ok(None) => {
                tracing::error!(sink = %name, "forwarding sink is not registered with the outbox");
                return;
            }
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "cannot read forwarding cursor; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(failures.next_delay()) => {}
                }
            }
        }
    };
    let label = name.to_string();
    let mut progress = Progress {
        name: name.clone(),
        outbox: Arc::clone(&outbox),
        tracker: Tracker::new(stored),
        stored,
        lag_records: metrics::gauge!("switchyard_forward_lag_records", "sink" => label.clone()),
        lag_seconds: metrics::gauge!("switchyard_forward_lag_seconds", "sink" => label),
        clock: config.clock.clone(),
    };
    let mut lanes = Lanes::start(&name, &sink, &config, &shutdown);
    let read_max = config.batch_records.max(1) * config.lanes.max(1) * 2;
    let mut pending: Option<Control> = None;
    loop {
        if let Some(Control::Replay { from, reply }) = pending.take().or_else(|| control.try_recv().ok()) {
            lanes.stop().await;
            let store = Arc::clone(&outbox);
            let sink_name = name.clone();
            let result = blocking(move || store.rewind(&sink_name, from)).await;
            if let Ok(cursor) = result {
                progress.stored = cursor;
                tracing::info!(sink = %name, from, cursor, "forwarding sink replays");
            }
            // On failure, what was out is sent again from the stored cursor.
            progress.tracker = Tracker::new(progress.stored);
            lanes = Lanes::start(&name, &sink, &config, &shutdown);
            let _ = reply.send(result);
        }
        let last = progress.settle(&mut lanes.done).await;

        let mut idle = true;
        let room = config.in_flight.saturating_sub(progress.tracker.len());
        if room > 0 && last > progress.tracker.read {
            let store = Arc::clone(&outbox);
            let after = progress.tracker.read;
            let limit = room.min(read_max);
            match blocking(move || store.read(after, limit)).await {
                Ok(records) if !records.is_empty() => {
                    idle = false;
                    records.iter().for_each(|r| progress.tracker.sent(r.seq, r.at));
                    'handoff: for (lane, batch) in batches(records, &config) {
                        // A lane retrying a sink that is down holds this up: the lag still
                        // grows meanwhile, and the gauges show it. A replay is taken at once:
                        // it restarts the lanes and reads again from the rewound cursor, so
                        // the batches not handed over yet are not lost.
                        let send = lanes.senders[lane].send(batch);
                        tokio::pin!(send);
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => break 'handoff,
                                sent = &mut send => if sent.is_err() { break 'handoff } else { break },
                                Some(request) = control.recv() => {
                                    pending = Some(request);
                                    break 'handoff;
                                }
                                _ = tokio::time::sleep(config.poll) => {
                                    progress.settle(&mut lanes.done).await;
                                }
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(sink = %name, error = %e, "cannot read the outbox; retrying"),
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        if idle {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = lanes.done.recv() => done.seqs.iter().for_each(|seq| progress.tracker.done(*seq)),
                Some(request) = control.recv() => pending = Some(request),
                _ = tokio::time::sleep(config.poll) => {}
            }
        }
    }
    lanes.stop().await;
    if let Err(e) = progress.acknowledge(&mut lanes.done).await {
        tracing::warn!(sink = %name, error = %e, "cannot store forwarding cursor at shutdown; records resend");
    }
}

/// Drops acknowledged records once older than `retain`, every few seconds, until `shutdown`.
pub async fn trim_loop(outbox: Arc<dyn OutboxStore>, retain: Duration, clock: Clock, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let store = Arc::clone(&outbox);
        let before = clock.now_ms() - retain.as_millis() as i64;
        if let Err(e) = blocking(move || store.trim(before)).await {
            tracing::warn!(error = %e, "cannot trim the forwarding outbox");
        }
    }
}
