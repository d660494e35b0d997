//! Conformance checks for [`DataStore`] backends: the message cache and the metrics as the
//! pipeline and the HTTP API rely on them.
//!
//! A backend implements [`DataBackend`] and invokes
//! [`data_store_conformance!`](crate::data_store_conformance) in a module of its own, which
//! expands to one `#[test]` per check. Beyond the trait docs, the checks pin down:
//! - stores are opened with an idempotency window of [`WINDOW_MS`]; a `messageId` counts from the
//!   `now` of the write that stored it, per resource, and a duplicate stores nothing;
//! - something is expired at `now` when `expires_at <= now`;
//! - the cache keeps the newest `keep` messages by timestamp, ties going to the later arrival;
//! - blocks from [`SeriesStore::scan`] are merged oldest first, the later block's point winning a
//!   shared timestamp (as the query engine does), and must give back every point of the range,
//!   before and after [`DataStore::maintain`] (which may seal, merge and expire but never lose
//!   a live point), and after a reopen;
//! - tenants and resources are exact strings: tenant `a` never sees `ab`'s data.
//!
//! Timestamps sit near [`BASE`]; `maintain` is called with a `now` days later, so a backend that
//! seals by age seals everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::data::{Block, DataStore, Ingest, MessageStore, Point, ResourceKey, SeriesStore, TimeRange, Value, Written};

pub use super::data_channels::{commands_are_kept_apart, sequence_numbers_increase};

/// The idempotency window stores under test are opened with: one minute.
pub const WINDOW_MS: i64 = 60_000;
/// Where the checks' timestamps start (2023-11-14).
pub const BASE: i64 = 1_700_000_000_000;
/// A `now` long after every timestamp the checks write.
const LATER: i64 = BASE + 30 * 24 * 3_600_000;

/// How the checks get stores of one backend (see [`super::Backend`] for the session suite).
pub trait DataBackend {
    /// The store under test.
    type Store: DataStore;
    /// Where one store keeps its data; dropped after every store opened on it.
    type Place;
    /// A new, empty place, independent of every other.
    fn place(&self) -> Self::Place;
    /// Opens the store at `place` with an idempotency window of [`WINDOW_MS`] (again after the
    /// previous store there was dropped).
    fn open(&self, place: &Self::Place) -> Self::Store;
}

/// Expands to one `#[test]` per data store check on the [`DataBackend`] `$backend`.
#[macro_export]
macro_rules! data_store_conformance {
    ($backend:expr) => {
        $crate::__data_store_tests!(
            [
                empty_store_reads_nothing,
                data_survives_reopen,
                cache_keeps_the_newest,
                messages_newest_first_with_range_and_limit,
                current_is_the_newest_timestamp,
                ttl_hides_and_maintain_removes,
                message_id_is_stored_once_per_window,
                series_list_with_latest,
                scan_covers_the_range_across_maintain,
                same_timestamp_keeps_the_later_value,
                delete_points_by_range_and_metric,
                delete_messages_by_range,
                drop_tenant_touches_no_other,
                odd_keys_are_exact,
                sequence_numbers_increase,
                commands_are_kept_apart,
            ]
            $backend
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __data_store_tests {
    ([$($check:ident,)*] $backend:expr) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::data::$check(&$backend);
            }
        )*
    };
}

pub(super) fn key(tenant: &str, resource: &str) -> ResourceKey {
    ResourceKey { tenant: tenant.into(), resource: resource.into() }
}

fn num(v: f64) -> Value {
    Value::Number(v)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// A message at `ts` with body `{"n":ts}` and the given points, kept 100 deep.
pub(super) fn msg(res: &ResourceKey, ts: i64, points: &[(&str, Value)]) -> Ingest {
    Ingest {
        resource: res.clone(),
        ts,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{ts}}}")),
        expires_at: None,
        keep: 100,
        points: points.iter().map(|(m, v)| (Arc::from(*m), v.clone())).collect(),
        channel: crate::data::Channel::Events,
        forward: true,
    }
}

/// [`Written::Stored`] as [`write`] reports it (sequence numbers are checked on their own).
pub(super) const STORED: Written = Written::Stored { seq: 0 };

/// What became of each message, sequence numbers left out.
pub(super) fn write<S: DataStore>(store: &S, batch: &[Ingest], now: i64) -> Vec<Written> {
    write_seq(store, batch, now)
        .into_iter()
        .map(|w| if matches!(w, Written::Stored { .. }) { STORED } else { w })
        .collect()
}

pub(super) fn write_seq<S: DataStore>(store: &S, batch: &[Ingest], now: i64) -> Vec<Written> {
    match store.write(batch, now) {
        Ok(written) => {
            assert_eq!(written.len(), batch.len(), "write returns one outcome per message");
            written
        }
        Err(e) => panic!("write of {} messages failed: {e}", batch.len()),
    }
}

fn maintain<S: DataStore>(store: &S, now: i64) {
    store.maintain(now).unwrap_or_else(|e| panic!("maintain failed: {e}"));
}

pub(super) fn all() -> TimeRange {
    TimeRange::default()
}

fn range(from: i64, until: i64) -> TimeRange {
    TimeRange { from: Some(from), until: Some(until) }
}

/// Timestamps of the cached messages in `range`, newest first.
pub(super) fn message_ts<S: DataStore>(
    store: &S,
    res: &ResourceKey,
    range: TimeRange,
    limit: usize,
    now: i64,
) -> Vec<i64> {
    let messages = store.messages(res, range, limit, now).unwrap_or_else(|e| panic!("messages failed: {e}"));
    messages.iter().map(|m| m.ts).collect()
}

/// The points of a series in `range` as the query engine would see them: blocks merged in order,
/// the later block winning a shared timestamp, then cut to the range.
pub fn points<S: DataStore>(store: &S, res: &ResourceKey, metric: &str, range: TimeRange, now: i64) -> Vec<Point> {
    let blocks = store.scan(res, metric, range, now).unwrap_or_else(|e| panic!("scan failed: {e}"));
    let mut merged = BTreeMap::new();
    for block in blocks {
        let points = match block {
            Block::Sealed(chunk) => chunk.points().unwrap_or_else(|e| panic!("stored chunk: {e}")),
            Block::Raw(points) => points,
        };
        for point in points {
            merged.insert(point.ts, point);
        }
    }
    merged
        .into_values()
        .filter(|p| range.from.is_none_or(|f| p.ts >= f) && range.until.is_none_or(|u| p.ts < u))
        .collect()
}

fn ts_of(points: &[Point]) -> Vec<i64> {
    points.iter().map(|p| p.ts).collect()
}

/// The metric names listed by `series`, with their latest points.
pub(super) fn listed<S: DataStore>(store: &S, res: &ResourceKey, now: i64) -> Vec<(String, Point)> {
    let series = store.series(res, now).unwrap_or_else(|e| panic!("series failed: {e}"));
    series.into_iter().map(|s| (s.metric.to_string(), s.latest)).collect()
}

/// A fresh store reads back nothing, and an empty batch is accepted.
pub fn empty_store_reads_nothing<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    assert!(write(&store, &[], BASE).is_empty());
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), Vec::<i64>::new());
    assert_eq!(store.current(&res, BASE).unwrap(), None);
    assert!(listed(&store, &res, BASE).is_empty());
    assert!(points(&store, &res, "m", all(), BASE).is_empty());
    assert_eq!(store.delete_messages(&res, all()).unwrap(), 0);
    assert_eq!(store.delete_points(&res, all(), None).unwrap(), 0);
    store.drop_tenant("t").unwrap();
    maintain(&store, LATER);
}

/// Messages and points written (and maintained) are there after a reopen, byte for byte.
pub fn data_survives_reopen<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let res = key("t", "r");
    let batch: Vec<_> = (0..3_000).map(|i| msg(&res, BASE + i * 1000, &[("x", num(i as f64 * 0.1))])).collect();
    {
        let store = backend.open(&place);
        write(&store, &batch[..2_000], BASE);
    }
    {
        let store = backend.open(&place);
        assert_eq!(ts_of(&points(&store, &res, "x", all(), BASE)).len(), 2_000, "points after reopen");
        maintain(&store, LATER);
        write(&store, &batch[2_000..], BASE);
    }
    let store = backend.open(&place);
    let expected: Vec<Point> = (0..3_000).map(|i| Point { ts: BASE + i * 1000, value: num(i as f64 * 0.1) }).collect();
    assert_eq!(points(&store, &res, "x", all(), BASE), expected, "points after maintain and reopen");
    let messages = store.messages(&res, all(), 2, BASE).unwrap();
    let newest = BASE + 2_999 * 1000;
    let messages: Vec<_> = messages.into_iter().map(|m| (m.ts, m.body)).collect();
    let expected = [newest, newest - 1000].map(|ts| (ts, Bytes::from(format!("{{\"n\":{ts}}}"))));
    assert_eq!(messages, expected, "messages after reopen");
    assert_eq!(message_ts(&store, &res, all(), 1_000, BASE).len(), 100, "the cache is capped across reopens");
}

/// The cache keeps the `keep` newest messages by timestamp, whatever order they arrive in; of
/// equal timestamps the later arrival is the newer.
pub fn cache_keeps_the_newest<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let with_keep =
        |ts: i64, body: &str| Ingest { keep: 3, body: Bytes::copy_from_slice(body.as_bytes()), ..msg(&res, ts, &[]) };
    write(&store, &[with_keep(BASE + 5, "5"), with_keep(BASE + 1, "1"), with_keep(BASE + 9, "9")], BASE);
    write(&store, &[with_keep(BASE + 7, "7"), with_keep(BASE + 2, "2")], BASE);
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), [BASE + 9, BASE + 7, BASE + 5]);
    write(&store, &[with_keep(BASE + 7, "7 again")], BASE);
    let bodies: Vec<_> = store.messages(&res, all(), 10, BASE).unwrap().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, [&b"9"[..], b"7 again", b"7"], "ties go to the later arrival");
    // A smaller `keep` (the tenant's setting changed) trims to it on the next write.
    write(&store, &[Ingest { keep: 1, ..with_keep(BASE + 3, "3") }], BASE);
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), [BASE + 9]);
    drop(store);
    let store = backend.open(&place);
    write(
        &store,
        &[Ingest { keep: 2, ..with_keep(BASE + 10, "10") }, Ingest { keep: 2, ..with_keep(BASE + 11, "11") }],
        BASE,
    );
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), [BASE + 11, BASE + 10], "after a reopen");
}

/// Lists are newest first; `from` is inclusive, `until` exclusive, `limit` caps.
pub fn messages_newest_first_with_range_and_limit<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let batch: Vec<_> = [4, 0, 8, 2, 6, -3].iter().map(|i| msg(&res, BASE + i, &[])).collect();
    write(&store, &batch, BASE);
    let at = |v: &[i64]| v.iter().map(|i| BASE + i).collect::<Vec<_>>();
    assert_eq!(message_ts(&store, &res, all(), 100, BASE), at(&[8, 6, 4, 2, 0, -3]));
    assert_eq!(message_ts(&store, &res, all(), 2, BASE), at(&[8, 6]));
    assert_eq!(message_ts(&store, &res, range(BASE + 2, BASE + 8), 100, BASE), at(&[6, 4, 2]));
    assert_eq!(message_ts(&store, &res, TimeRange { from: Some(BASE + 4), until: None }, 100, BASE), at(&[8, 6, 4]));
    assert_eq!(message_ts(&store, &res, TimeRange { from: None, until: Some(BASE + 1) }, 1, BASE), at(&[0]));
    assert_eq!(message_ts(&store, &res, range(BASE + 9, BASE + 20), 100, BASE), Vec::<i64>::new());
    assert_eq!(message_ts(&store, &res, all(), 0, BASE), Vec::<i64>::new());
}

/// `current` is the message with the newest timestamp, not the last one written.
pub fn current_is_the_newest_timestamp<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    write(&store, &[msg(&res, BASE + 10, &[]), msg(&res, BASE + 5, &[])], BASE);
    let current = store.current(&res, BASE).unwrap().expect("a current message");
    assert_eq!((current.ts, current.body), (BASE + 10, Bytes::from(format!("{{\"n\":{}}}", BASE + 10))));
    assert_eq!(store.current(&key("t", "other"), BASE).unwrap(), None);
}

/// Expired messages and points are not read (before `maintain` too), and `maintain` keeps the
/// rest.
pub fn ttl_hides_and_maintain_removes<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let expiring = |ts: i64, at: i64| Ingest {
        expires_at: Some(at),
        ..msg(&res, ts, &[("x", num(ts as f64)), ("gone", num(1.0))])
    };
    let mut batch: Vec<_> = (0..50).map(|i| msg(&res, BASE + i * 1000, &[("x", num(i as f64))])).collect();
    batch.extend((100..1_600).map(|i| expiring(BASE + i * 1000, BASE + 5_000_000)));
    write(&store, &batch, BASE);
    let before = BASE + 4_999_999;
    assert_eq!(message_ts(&store, &res, all(), 1_000, before).len(), 100);
    assert_eq!(points(&store, &res, "x", all(), before).len(), 1_550);
    let after = BASE + 5_000_000;
    assert_eq!(message_ts(&store, &res, all(), 1_000, after), Vec::<i64>::new(), "the 100 cached messages all expired");
    assert_eq!(store.current(&res, after).unwrap(), None);
    let kept: Vec<i64> = (0..50).map(|i| BASE + i * 1000).collect();
    assert_eq!(ts_of(&points(&store, &res, "x", all(), after)), kept, "expired points are not read");
    assert_eq!(listed(&store, &res, after), [("x".to_owned(), Point { ts: BASE + 49_000, value: num(49.0) })]);
    maintain(&store, after);
    assert_eq!(ts_of(&points(&store, &res, "x", all(), after)), kept, "after maintain");
    assert!(points(&store, &res, "gone", all(), after).is_empty());
    assert_eq!(listed(&store, &res, after), [("x".to_owned(), Point { ts: BASE + 49_000, value: num(49.0) })]);
    drop(store);
    let store = backend.open(&place);
    assert_eq!(ts_of(&points(&store, &res, "x", all(), after)), kept, "after reopen");
    assert_eq!(message_ts(&store, &res, all(), 1_000, after), Vec::<i64>::new());
}

/// A `messageId` is stored once per resource within the window: repeats (in one batch or later,
/// across a reopen) are duplicates that store nothing; another resource may use the same id;
/// after the window it is stored again.
pub fn message_id_is_stored_once_per_window<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let (res, other) = (key("t", "r"), key("t", "r2"));
    let with_id = |res: &ResourceKey, ts: i64, id: &str| Ingest {
        message_id: Some(id.into()),
        ..msg(res, ts, &[("x", num(ts as f64))])
    };
    let out =
        write(&store, &[with_id(&res, BASE, "m1"), with_id(&res, BASE + 1, "m1"), with_id(&other, BASE, "m1")], BASE);
    assert_eq!(out, [STORED, Written::Duplicate, STORED]);
    drop(store);
    let store = backend.open(&place);
    let out = write(
        &store,
        &[with_id(&res, BASE + 2, "m1"), with_id(&res, BASE + 3, "m2"), msg(&res, BASE + 4, &[])],
        BASE + WINDOW_MS - 1,
    );
    assert_eq!(out, [Written::Duplicate, STORED, STORED]);
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), [BASE + 4, BASE + 3, BASE]);
    assert_eq!(ts_of(&points(&store, &res, "x", all(), BASE)), [BASE, BASE + 3], "a duplicate stores no points");
    maintain(&store, BASE + WINDOW_MS - 1);
    assert_eq!(
        write(&store, &[with_id(&res, BASE + 5, "m1")], BASE + WINDOW_MS - 1),
        [Written::Duplicate],
        "after maintain"
    );
    assert_eq!(write(&store, &[with_id(&res, BASE + 6, "m1")], BASE + WINDOW_MS), [STORED], "after the window");
    assert_eq!(
        write(&store, &[with_id(&res, BASE + 7, "m1")], BASE + WINDOW_MS + 1),
        [Written::Duplicate],
        "a new window"
    );
    maintain(&store, BASE + 3 * WINDOW_MS);
    assert_eq!(write(&store, &[with_id(&res, BASE + 8, "m1")], BASE + 3 * WINDOW_MS), [STORED]);
}

/// `series` lists every metric of the resource by name with its newest point, text included.
pub fn series_list_with_latest<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    write(
        &store,
        &[
            msg(&res, BASE + 20, &[("temp", num(21.5)), ("state", text("on"))]),
            msg(&res, BASE + 10, &[("temp", num(3.0)), ("a.b", num(-1.0))]),
        ],
        BASE,
    );
    let expected = vec![
        ("a.b".to_owned(), Point { ts: BASE + 10, value: num(-1.0) }),
        ("state".to_owned(), Point { ts: BASE + 20, value: text("on") }),
        ("temp".to_owned(), Point { ts: BASE + 20, value: num(21.5) }),
    ];
    assert_eq!(listed(&store, &res, BASE), expected);
    maintain(&store, LATER);
    assert_eq!(listed(&store, &res, BASE), expected, "after maintain");
    write(&store, &[msg(&res, BASE + 30, &[("temp", num(22.0))])], BASE);
    assert_eq!(listed(&store, &res, BASE)[2], ("temp".to_owned(), Point { ts: BASE + 30, value: num(22.0) }));
    assert!(listed(&store, &key("t", "other"), BASE).is_empty());
}

/// A long series comes back whole and cut to any range, before and after maintain, with writes
/// out of order and into already maintained time.
pub fn scan_covers_the_range_across_maintain<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let value = |i: i64| if i % 97 == 0 { text(&format!("s{i}")) } else { num((i as f64 * 0.37).sin() * 100.0) };
    let mut expected: BTreeMap<i64, Value> = BTreeMap::new();
    let mut order: Vec<i64> = (0..5_000).collect();
    order.swap(10, 4_000);
    order.swap(1_500, 2_500);
    for part in order.chunks(700) {
        let batch: Vec<_> = part.iter().map(|i| msg(&res, BASE + i * 1000, &[("x", value(*i))])).collect();
        write(&store, &batch, BASE);
        expected.extend(part.iter().map(|i| (BASE + i * 1000, value(*i))));
        if part[0] % 1_400 == 0 {
            maintain(&store, LATER);
        }
    }
    check_ranges(&store, &res, &expected, "as written");
    maintain(&store, LATER);
    check_ranges(&store, &res, &expected, "after maintain");
    // Points before, between and after what is sealed.
    let late: Vec<_> = [-5, 2_000, 7_000].iter().map(|i| msg(&res, BASE + i * 1000 + 1, &[("x", value(*i))])).collect();
    write(&store, &late, BASE);
    expected.extend([-5, 2_000, 7_000].iter().map(|i| (BASE + i * 1000 + 1, value(*i))));
    maintain(&store, LATER);
    drop(store);
    let store = backend.open(&place);
    assert_eq!(points(&store, &res, "x", all(), BASE).len(), 5_003);
    check_ranges(&store, &res, &expected, "after late writes and reopen");
}

/// Checks ranges of series `x` against `expected`.
fn check_ranges<S: DataStore>(store: &S, res: &ResourceKey, expected: &BTreeMap<i64, Value>, context: &str) {
    for (from, until) in [(0, 5_000), (0, 1), (1_023, 1_025), (999, 3_001), (4_999, 6_000), (-10, 10)] {
        let (from_ts, until_ts) = (BASE + from * 1000, BASE + until * 1000);
        let want: Vec<Point> =
            expected.range(from_ts..until_ts).map(|(ts, v)| Point { ts: *ts, value: v.clone() }).collect();
        assert_eq!(points(store, res, "x", range(from_ts, until_ts), BASE), want, "{context}: range {from}..{until}");
    }
    assert_eq!(points(store, res, "x", all(), BASE).len(), expected.len(), "{context}: everything");
}

/// Writing a timestamp again replaces its value, whether the first is raw or maintained.
pub fn same_timestamp_keeps_the_later_value<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let batch: Vec<_> = (0..2_000).map(|i| msg(&res, BASE + i, &[("x", num(1.0))])).collect();
    write(&store, &batch, BASE);
    write(&store, &[msg(&res, BASE + 5, &[("x", num(2.0))]), msg(&res, BASE + 5, &[("x", num(3.0))])], BASE);
    let at = |store: &B::Store, ts: i64| points(store, &res, "x", range(ts, ts + 1), BASE);
    assert_eq!(at(&store, BASE + 5), [Point { ts: BASE + 5, value: num(3.0) }]);
    maintain(&store, LATER);
    assert_eq!(at(&store, BASE + 5), [Point { ts: BASE + 5, value: num(3.0) }], "after maintain");
    write(&store, &[msg(&res, BASE + 5, &[("x", text("four"))]), msg(&res, BASE + 1_999, &[("x", num(5.0))])], BASE);
    assert_eq!(at(&store, BASE + 5), [Point { ts: BASE + 5, value: text("four") }], "over a maintained point");
    maintain(&store, LATER);
    assert_eq!(at(&store, BASE + 5), [Point { ts: BASE + 5, value: text("four") }], "maintained again");
    assert_eq!(at(&store, BASE + 1_999), [Point { ts: BASE + 1_999, value: num(5.0) }]);
    assert_eq!(points(&store, &res, "x", all(), BASE).len(), 2_000);
    assert_eq!(listed(&store, &res, BASE), [("x".to_owned(), Point { ts: BASE + 1_999, value: num(5.0) })]);
    // A timestamp written three times (once maintained) is one point to delete.
    write(&store, &[msg(&res, BASE + 7, &[("x", num(6.0))]), msg(&res, BASE + 7, &[("x", num(7.0))])], BASE);
    assert_eq!(store.delete_points(&res, range(BASE + 7, BASE + 8), None).unwrap(), 1);
    assert!(at(&store, BASE + 7).is_empty());
}

/// `delete_points` removes the range of the named metrics (all when none are named), raw or
/// maintained, and counts what it removed; the series list follows.
pub fn delete_points_by_range_and_metric<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let batch: Vec<_> =
        (0..3_000).map(|i| msg(&res, BASE + i, &[("a", num(i as f64)), ("b", num(1.0)), ("c", num(2.0))])).collect();
    write(&store, &batch[..2_000], BASE);
    maintain(&store, LATER);
    write(&store, &batch[2_000..], BASE);
    let names = ["a".to_owned(), "nope".to_owned()];
    assert_eq!(store.delete_points(&res, range(BASE + 1_500, BASE + 2_500), Some(&names)).unwrap(), 1_000);
    let a = ts_of(&points(&store, &res, "a", all(), BASE));
    assert_eq!(a, (0..1_500).chain(2_500..3_000).map(|i| BASE + i).collect::<Vec<_>>());
    assert_eq!(points(&store, &res, "b", all(), BASE).len(), 3_000, "other metrics untouched");
    assert_eq!(store.delete_points(&res, range(BASE + 2_900, BASE + 10_000), None).unwrap(), 300);
    assert_eq!(
        store.delete_points(&res, TimeRange { from: None, until: Some(BASE + 100) }, Some(&["c".to_owned()])).unwrap(),
        100
    );
    maintain(&store, LATER);
    drop(store);
    let store = backend.open(&place);
    let a = ts_of(&points(&store, &res, "a", all(), BASE));
    assert_eq!(a, (0..1_500).chain(2_500..2_900).map(|i| BASE + i).collect::<Vec<_>>());
    assert_eq!(points(&store, &res, "b", all(), BASE).len(), 2_900);
    assert_eq!(points(&store, &res, "c", all(), BASE).len(), 2_800);
    let latest: Vec<_> = listed(&store, &res, BASE).into_iter().map(|(m, p)| (m, p.ts)).collect();
    assert_eq!(
        latest,
        [("a".to_owned(), BASE + 2_899), ("b".to_owned(), BASE + 2_899), ("c".to_owned(), BASE + 2_899)]
    );
    assert_eq!(store.delete_points(&res, all(), Some(&["b".to_owned()])).unwrap(), 2_900);
    let names: Vec<_> = listed(&store, &res, BASE).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names, ["a", "c"], "a series with no point left is not listed");
    assert_eq!(message_ts(&store, &res, all(), 1_000, BASE).len(), 100, "messages untouched");
}

/// `delete_messages` removes the range and counts; points stay.
pub fn delete_messages_by_range<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let (res, other) = (key("t", "r"), key("t", "r2"));
    let batch: Vec<_> =
        (0..10).flat_map(|i| [msg(&res, BASE + i, &[("x", num(1.0))]), msg(&other, BASE + i, &[])]).collect();
    write(&store, &batch, BASE);
    assert_eq!(store.delete_messages(&res, range(BASE + 3, BASE + 6)).unwrap(), 3);
    assert_eq!(message_ts(&store, &res, all(), 100, BASE), [9, 8, 7, 6, 2, 1, 0].map(|i| BASE + i));
    assert_eq!(store.delete_messages(&res, all()).unwrap(), 7);
    assert_eq!(store.current(&res, BASE).unwrap(), None);
    assert_eq!(message_ts(&store, &other, all(), 100, BASE).len(), 10, "another resource untouched");
    assert_eq!(points(&store, &res, "x", all(), BASE).len(), 10, "points untouched");
    // The cache fills up again to its cap.
    let more: Vec<_> = (0..5).map(|i| Ingest { keep: 3, ..msg(&res, BASE + 100 + i, &[]) }).collect();
    write(&store, &more, BASE);
    assert_eq!(message_ts(&store, &res, all(), 100, BASE), [104, 103, 102].map(|i| BASE + i));
}

/// Dropping a tenant removes all of its data and none of another's, even one whose name it
/// prefixes; the dropped tenant can start over.
pub fn drop_tenant_touches_no_other<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let tenants = ["a", "ab", "b", "a/b"];
    for tenant in tenants {
        let res = key(tenant, "r");
        let batch: Vec<_> = (0..1_500)
            .map(|i| Ingest { message_id: Some(format!("id{i}").into()), ..msg(&res, BASE + i, &[("x", num(1.0))]) })
            .collect();
        write(&store, &batch, BASE);
    }
    maintain(&store, LATER);
    store.drop_tenant("a").unwrap();
    let gone = key("a", "r");
    assert_eq!(message_ts(&store, &gone, all(), 100, BASE), Vec::<i64>::new());
    assert!(listed(&store, &gone, BASE).is_empty());
    assert!(points(&store, &gone, "x", all(), BASE).is_empty());
    for tenant in ["ab", "b", "a/b"] {
        let res = key(tenant, "r");
        assert_eq!(message_ts(&store, &res, all(), 1_000, BASE).len(), 100, "tenant {tenant}");
        assert_eq!(points(&store, &res, "x", all(), BASE).len(), 1_500, "tenant {tenant}");
        assert_eq!(listed(&store, &res, BASE).len(), 1, "tenant {tenant}");
    }
    let again = Ingest { message_id: Some("id0".into()), ..msg(&gone, BASE, &[("x", num(2.0))]) };
    assert_eq!(write(&store, &[again], BASE), [STORED], "its message ids are forgotten");
    assert_eq!(points(&store, &gone, "x", all(), BASE), [Point { ts: BASE, value: num(2.0) }]);
    drop(store);
    let store = backend.open(&place);
    assert_eq!(points(&store, &key("ab", "r"), "x", all(), BASE).len(), 1_500);
    assert_eq!(message_ts(&store, &gone, all(), 100, BASE), [BASE]);
}

/// Tenants, resources, metrics and message ids are exact strings, however odd.
pub fn odd_keys_are_exact<B: DataBackend>(backend: &B) {
    const ODD: &[&str] =
        &["", "a", "a\u{0}", "a/b", "a:b", "a%", "a_", "é", "e\u{301}", "日本", "🦀", " ", "\u{ffff}", "ab"];
    let place = backend.place();
    let store = backend.open(&place);
    let mut batch = Vec::new();
    for (i, tenant) in ODD.iter().enumerate() {
        for (j, resource) in ODD.iter().enumerate() {
            let res = key(tenant, resource);
            let points: Vec<(&str, Value)> =
                ODD.iter().enumerate().map(|(k, m)| (*m, num((i * 10_000 + j * 100 + k) as f64))).collect();
            batch.push(Ingest {
                message_id: Some((*resource).into()),
                ..msg(&res, BASE + (i * 100 + j) as i64, &points)
            });
        }
    }
    assert!(write(&store, &batch, BASE).iter().all(|w| *w == STORED));
    let check = |store: &B::Store, context: &str| {
        for (i, tenant) in ODD.iter().enumerate() {
            for (j, resource) in ODD.iter().enumerate() {
                let res = key(tenant, resource);
                let ts = BASE + (i * 100 + j) as i64;
                assert_eq!(message_ts(store, &res, all(), 10, BASE), [ts], "{context}: {tenant:?}/{resource:?}");
                let names: Vec<_> = listed(store, &res, BASE).into_iter().map(|(m, _)| m).collect();
                let mut want: Vec<_> = ODD.iter().map(|m| m.to_string()).collect();
                want.sort();
                assert_eq!(names, want, "{context}: {tenant:?}/{resource:?}");
                for (k, metric) in ODD.iter().enumerate() {
                    let value = num((i * 10_000 + j * 100 + k) as f64);
                    assert_eq!(
                        points(store, &res, metric, all(), BASE),
                        [Point { ts, value }],
                        "{context}: {metric:?}"
                    );
                }
            }
        }
    };
    check(&store, "as written");
    maintain(&store, LATER);
    drop(store);
    let store = backend.open(&place);
    check(&store, "maintained and reopened");
}
