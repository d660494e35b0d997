//! The sink task against the in-memory outbox and a scripted sink: every record arrives, in
//! order per resource, through retries, parking, replays and restarts, and the lag gauges keep
//! up while the sink is down. Time is paused: back-off and polling cost nothing, and nothing
//! asserts on durations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use switchyard_forward::{Clock, Forwarder, Outcome, RunConfig, Sink, SinkKind};
use switchyard_storage::data::{Channel, DataStore, Ingest, ResourceKey};
use switchyard_storage::{MemoryDataStore, OutboxRecord, OutboxStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Fails the first `fail` calls (503 with `Retry-After: 1`), parks batches holding resource
/// "bad", and records the rest.
#[derive(Default)]
struct Scripted {
    fail: AtomicUsize,
    calls: watch::Sender<usize>,
    got: Mutex<Vec<(String, u64)>>,
}

/// A handle to a [`Scripted`] sink the test keeps too.
struct Shared(Arc<Scripted>);

impl Sink for Shared {
    async fn deliver(&self, records: &[OutboxRecord]) -> Outcome {
        let this = &self.0;
        this.calls.send_modify(|calls| *calls += 1);
        if this.fail.load(Ordering::SeqCst) > 0 {
            this.fail.fetch_sub(1, Ordering::SeqCst);
            return Outcome::Retry { after: Some(Duration::from_secs(1)), reason: "scripted".into() };
        }
        if records.iter().any(|r| &*r.resource == "bad") {
            return Outcome::Park { reason: "scripted".into() };
        }
        let mut got = this.got.lock().unwrap();
        got.extend(records.iter().map(|r| (r.resource.to_string(), r.seq)));
        Outcome::Delivered
    }
}

fn ingest(resource: &str, n: usize) -> Ingest {
    Ingest {
        resource: ResourceKey { tenant: "t".into(), resource: resource.into() },
        ts: 1_700_000_000_000 + n as i64,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        expires_at: None,
        keep: 10_000,
        points: Vec::new(),
        channel: Channel::Events,
        forward: true,
    }
}

fn config() -> RunConfig {
    RunConfig { lanes: 3, batch_records: 7, in_flight: 50, ..RunConfig::default() }
}

fn start(store: &MemoryDataStore, sink: &Arc<Scripted>, shutdown: &CancellationToken) -> (Forwarder, TaskTracker) {
    start_with(config(), store, sink, shutdown)
}

fn start_with(
    config: RunConfig,
    store: &MemoryDataStore,
    sink: &Arc<Scripted>,
    shutdown: &CancellationToken,
) -> (Forwarder, TaskTracker) {
    let tasks = TaskTracker::new();
    let outbox: Arc<dyn OutboxStore> = Arc::new(store.clone());
    let sinks = vec![("hook".to_string(), SinkKind::Custom(Box::new(Shared(Arc::clone(sink)))))];
    let forwarder = Forwarder::start(outbox, sinks, config, &tasks, shutdown.clone()).unwrap();
    (forwarder, tasks)
}

async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never reached");
}

/// Checks every resource's sequences increase (duplicates allowed only as a resend of a run).
fn in_order_per_resource(got: &[(String, u64)]) {
    let mut last: std::collections::HashMap<&str, u64> = Default::default();
    for (resource, seq) in got {
        let previous = last.insert(resource, *seq).unwrap_or(0);
        assert!(*seq > previous, "{resource}: {seq} after {previous}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_record_arrives_in_order_per_resource_through_retries() {
    let store = MemoryDataStore::default();
    let sink = Arc::new(Scripted { fail: AtomicUsize::new(5), ..Default::default() });
    let shutdown = CancellationToken::new();
    let (_forwarder, tasks) = start(&store, &sink, &shutdown);
    let resources = ["a", "b", "c", "d", "e"];
    for round in 0..40 {
        let batch: Vec<Ingest> = resources.iter().map(|r| ingest(r, round)).collect();
        store.write(&batch, 1_700_000_000_000).unwrap();
    }
    until(|| store.cursor("hook").unwrap() == Some(200)).await;
    let got = sink.got.lock().unwrap().clone();
    in_order_per_resource(&got);
    let mut seqs: Vec<u64> = got.iter().map(|(_, s)| *s).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "each record once: no crash, no resend");
    assert!(*sink.calls.borrow() > got.len() / 7, "the failures were retried");
    assert_eq!(store.pending_bytes("t"), 0);
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

#[tokio::test(start_paused = true)]
async fn parked_batches_are_passed_over() {
    let store = MemoryDataStore::default();
    let sink = Arc::new(Scripted::default());
    let shutdown = CancellationToken::new();
    let (_forwarder, _tasks) = start(&store, &sink, &shutdown);
    let batch: Vec<Ingest> = (0..30).map(|n| ingest(if n % 3 == 0 { "bad" } else { "good" }, n)).collect();
    store.write(&batch, 0).unwrap();
    until(|| store.cursor("hook").unwrap() == Some(30)).await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 20, "the good resource's records, none of the parked ones");
    assert!(got.iter().all(|(r, _)| r == "good"));
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn replay_sends_again_from_a_time_and_shutdown_keeps_the_cursor() {
    let store = MemoryDataStore::default();
    let sink = Arc::new(Scripted::default());
    let shutdown = CancellationToken::new();
    let (forwarder, tasks) = start(&store, &sink, &shutdown);
    for n in 0..10 {
        store.write(&[ingest("a", n)], 1000 * n as i64).unwrap();
    }
    until(|| store.cursor("hook").unwrap() == Some(10)).await;
    assert_eq!(forwarder.replay("hook", 6000).await.unwrap(), 6);
    until(|| sink.got.lock().unwrap().len() == 14).await;
    let again: Vec<u64> = sink.got.lock().unwrap()[10..].iter().map(|(_, s)| *s).collect();
    assert_eq!(again, [7, 8, 9, 10]);
    assert!(matches!(forwarder.replay("nope", 0).await, Err(switchyard_forward::ForwardError::UnknownSink(_))));
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;

    // A restart resumes after the stored cursor: nothing is sent twice.
    let sink2 = Arc::new(Scripted::default());
    store.write(&[ingest("a", 10)], 10_000).unwrap();
    let shutdown = CancellationToken::new();
    let (_forwarder, _tasks) = start(&store, &sink2, &shutdown);
    until(|| store.cursor("hook").unwrap() == Some(11)).await;
    assert_eq!(*sink2.got.lock().unwrap(), [("a".to_string(), 11)]);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_replay_is_answered_while_the_sink_is_down() {
    let store = MemoryDataStore::default();
    let sink = Arc::new(Scripted { fail: AtomicUsize::new(usize::MAX), ..Default::default() });
    let shutdown = CancellationToken::new();
    // One lane of one-record batches: the runner waits to hand the third batch to the lane,
    // which retries the first for as long as the sink is down.
    let config = RunConfig { lanes: 1, batch_records: 1, ..config() };
    let (forwarder, tasks) = start_with(config, &store, &sink, &shutdown);
    store.write(&(0..10).map(|n| ingest("a", n)).collect::<Vec<_>>(), 0).unwrap();
    let mut calls = sink.calls.subscribe();
    calls.wait_for(|calls| *calls >= 3).await.unwrap();
    // Virtual time: an hour of retries passes in no time, and the replay must not wait for them.
    let answer = tokio::time::timeout(Duration::from_secs(3600), forwarder.replay("hook", 0)).await;
    assert_eq!(answer.expect("the replay is answered while the sink is down").unwrap(), 0);

    sink.fail.store(0, Ordering::SeqCst);
    until(|| store.cursor("hook").unwrap() == Some(10)).await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<u64>>());
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

/// The gauges the sink tasks set, each one watched by the test; other metrics go nowhere.
#[derive(Default)]
struct Gauges(Mutex<HashMap<String, Arc<Watched>>>);

/// A gauge whose every setting wakes its watchers.
#[derive(Default)]
struct Watched(watch::Sender<f64>);

impl GaugeFn for Watched {
    fn increment(&self, value: f64) {
        self.0.send_modify(|gauge| *gauge += value);
    }
    fn decrement(&self, value: f64) {
        self.0.send_modify(|gauge| *gauge -= value);
    }
    fn set(&self, value: f64) {
        self.0.send_replace(value);
    }
}

impl Gauges {
    fn gauge(&self, name: &str) -> Arc<Watched> {
        Arc::clone(self.0.lock().unwrap().entry(name.to_string()).or_default())
    }

    fn watch(&self, name: &str) -> watch::Receiver<f64> {
        self.gauge(name).0.subscribe()
    }
}

impl Recorder for Gauges {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.gauge(key.name()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Waits until `gauge` shows `what`; fails once it was set, or the sink tried, `limit` more
/// times without showing it.
async fn shows(gauge: &mut watch::Receiver<f64>, what: &str, check: impl Fn(f64) -> bool, sink: &Scripted) {
    let limit = 100;
    let mut calls = sink.calls.subscribe();
    let before = *calls.borrow_and_update();
    for _ in 0..limit {
        if check(*gauge.borrow_and_update()) {
            return;
        }
        tokio::select! {
            changed = gauge.changed() => changed.expect("the gauge is kept"),
            _ = calls.wait_for(|calls| *calls >= before + limit) => break,
        }
    }
    panic!("expected {what}, the gauge still shows {} after {limit} settings or sink attempts", *gauge.borrow());
}

#[tokio::test(start_paused = true)]
async fn lag_grows_while_the_sink_is_down() {
    let gauges = Gauges::default();
    // The sink task runs on this thread (a current-thread runtime): its gauges come here.
    let _recorder = metrics::set_default_local_recorder(&gauges);
    let mut lag_records = gauges.watch("switchyard_forward_lag_records");
    let mut lag_seconds = gauges.watch("switchyard_forward_lag_seconds");
    let start = tokio::time::Instant::now();
    let clock = Clock::new(move || 1_700_000_000_000 + start.elapsed().as_millis() as i64);
    let store = MemoryDataStore::default();
    let sink = Arc::new(Scripted { fail: AtomicUsize::new(usize::MAX), ..Default::default() });
    let shutdown = CancellationToken::new();
    // One lane of one-record batches: the fourth batch waits on the lane retrying the first.
    let config =
        RunConfig { lanes: 1, batch_records: 1, poll: Duration::from_secs(1), clock: clock.clone(), ..config() };
    let (_forwarder, tasks) = start_with(config, &store, &sink, &shutdown);
    let write = |from: usize| {
        let batch: Vec<Ingest> = (from..from + 10).map(|n| ingest("a", n)).collect();
        store.write(&batch, clock.now_ms()).unwrap();
    };

    write(0);
    // Time passes only once the sink task waits: from here on it waits on the lane.
    shows(&mut lag_seconds, "a lag of a second", |seconds| seconds >= 1.0, &sink).await;
    write(10);
    shows(&mut lag_records, "20 records behind", |records| records == 20.0, &sink).await;
    shows(&mut lag_seconds, "a lag of a minute", |seconds| seconds >= 60.0, &sink).await;

    sink.fail.store(0, Ordering::SeqCst);
    shows(&mut lag_records, "caught up", |records| records == 0.0, &sink).await;
    shows(&mut lag_seconds, "no lag", |seconds| seconds == 0.0, &sink).await;
    assert_eq!(store.cursor("hook").unwrap(), Some(20));
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}
