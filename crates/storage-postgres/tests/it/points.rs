//! What is particular to the PostgreSQL metrics: points of a version 1 schema (one row per
//! point) moved into point groups by the migration, and unsynced writes, read at once and kept
//! by a sync.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::conformance::data::points;
use switchyard_storage::data::{
    Channel, DataStore, Ingest, MessageStore, Point, ResourceKey, SeriesStore, TimeRange, Value,
};
use switchyard_storage_postgres::PgDataStore;

use super::{Place, admin};

fn res() -> ResourceKey {
    ResourceKey { tenant: "t".into(), resource: "r".into() }
}

fn at(ts: i64, value: Value) -> Point {
    Point { ts, value }
}

fn ingest(ts: i64, metric: &str, value: f64) -> Ingest {
    Ingest {
        resource: res(),
        ts,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{ts}}}")),
        expires_at: None,
        keep: 10,
        points: vec![(Arc::from(metric), Value::Number(value))],
        channel: Channel::Events,
        forward: true,
    }
}

#[test]
fn version_1_points_move_to_groups() {
    let place = Place::fresh();
    drop(PgDataStore::open(&place.config, 1000).unwrap());
    // Back to version 1: its points table, with a few points in it.
    let s = format!("\"{}\"", place.schema());
    admin(&format!("DROP TABLE {s}.point_groups")).unwrap();
    admin(&format!("DELETE FROM {s}.schema_migrations WHERE version = 2")).unwrap();
    admin(&format!(
        "CREATE TABLE {s}.points (tenant bytea NOT NULL, resource bytea NOT NULL, metric bytea NOT NULL, \
         ts bigint NOT NULL, num double precision, txt bytea, expires_at bigint, \
         PRIMARY KEY (tenant, resource, metric, ts), CHECK ((num IS NULL) <> (txt IS NULL)))"
    ))
    .unwrap();
    admin(&format!(
        "INSERT INTO {s}.points VALUES ('t', 'r', 'x', 10, 1, NULL, NULL), ('t', 'r', 'y', 10, NULL, 'on', NULL), \
         ('t', 'r', 'x', 20, 2, NULL, 50), ('t', 'r', 'x', 30, 3, NULL, NULL), ('t', 'q', 'x', 10, 4, NULL, NULL)"
    ))
    .unwrap();
    let store = PgDataStore::open(&place.config, 1000).unwrap();
    let num = Value::Number;
    let all = TimeRange::default();
    assert_eq!(points(&store, &res(), "x", all, 0), [at(10, num(1.0)), at(20, num(2.0)), at(30, num(3.0))]);
    assert_eq!(points(&store, &res(), "x", all, 60), [at(10, num(1.0)), at(30, num(3.0))], "expiry kept");
    assert_eq!(points(&store, &res(), "y", all, 0), [at(10, Value::Text("on".into()))]);
    let other = ResourceKey { tenant: "t".into(), resource: "q".into() };
    assert_eq!(points(&store, &other, "x", all, 0), [at(10, num(4.0))]);
    let latest: Vec<_> =
        store.series(&res(), 0).unwrap().into_iter().map(|s| (s.metric.to_string(), s.latest)).collect();
    assert_eq!(latest, [("x".to_owned(), at(30, num(3.0))), ("y".to_owned(), at(10, Value::Text("on".into())))]);
    store.write(&[ingest(10, "x", 9.0)], 0).unwrap();
    assert_eq!(points(&store, &res(), "x", TimeRange { from: Some(10), until: Some(11) }, 0), [at(10, num(9.0))]);
    assert_eq!(store.delete_points(&res(), all, None).unwrap(), 4, "x at 10, 20, 30 and y at 10");
}

#[test]
fn unsynced_writes_are_read_at_once_and_kept_by_a_sync() {
    let place = Place::fresh();
    {
        let store = PgDataStore::open(&place.config, 1000).unwrap();
        store.write_unsynced(&[ingest(1, "x", 1.0), ingest(2, "x", 2.0)], 0).unwrap();
        assert_eq!(store.current(&res(), 0).unwrap().map(|m| m.ts), Some(2));
        store.write_unsynced(&[ingest(3, "x", 3.0)], 0).unwrap();
        store.sync().unwrap();
        store.sync().unwrap();
    }
    let store = PgDataStore::open(&place.config, 1000).unwrap();
    let ts: Vec<i64> = store.messages(&res(), TimeRange::default(), 10, 0).unwrap().iter().map(|m| m.ts).collect();
    assert_eq!(ts, [3, 2, 1]);
    assert_eq!(points(&store, &res(), "x", TimeRange::default(), 0).len(), 3);
}
