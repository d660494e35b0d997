//! Conformance checks for [`OutboxStore`] backends: the forwarding outbox as the forwarder and
//! the intake's bound rely on it.
//!
//! A backend whose [`DataBackend::Store`] also implements [`OutboxStore`] invokes
//! [`outbox_conformance!`](crate::outbox_conformance) in a module of its own. Beyond the trait
//! docs, the checks pin down:
//! - only messages that were stored (not duplicates) and are forwarded get a record, in the
//!   order of the batch, with the `now` of their write;
//! - sequences keep growing across reopens, trimming and sink changes;
//! - cursors, sinks and records survive a reopen; pending bytes are counted again after one.

use std::sync::Arc;

use bytes::Bytes;

use super::data::{BASE, DataBackend};
use crate::data::{Channel, DataStore, Ingest, ResourceKey};
use crate::forward::OutboxStore;

/// Expands to one `#[test]` per outbox check on the [`DataBackend`] `$backend`.
#[macro_export]
macro_rules! outbox_conformance {
    ($backend:expr) => {
        $crate::__outbox_tests!(
            [
                no_sink_appends_nothing,
                records_follow_the_write,
                cursors_and_records_survive_reopen,
                trim_keeps_what_a_sink_needs,
                rewind_by_time,
                pending_bytes_per_tenant,
                sequences_never_go_back,
            ]
            $backend
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_tests {
    ([$($check:ident,)*] $backend:expr) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::forward::$check(&$backend);
            }
        )*
    };
}

fn ingest(tenant: &str, resource: &str, n: i64, forward: bool) -> Ingest {
    Ingest {
        resource: ResourceKey { tenant: tenant.into(), resource: resource.into() },
        ts: BASE + n,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        expires_at: None,
        keep: 1000,
        points: Vec::new(),
        channel: Channel::Events,
        forward,
    }
}

fn write<S: DataStore>(store: &S, batch: &[Ingest], now: i64) {
    store.write(batch, now).unwrap_or_else(|e| panic!("write failed: {e}"));
}

fn bodies<S: OutboxStore>(store: &S, after: u64) -> Vec<String> {
    let records = store.read(after, 1000).expect("read outbox");
    records.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

pub fn no_sink_appends_nothing<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    let store = backend.open(&place);
    write(&store, &[ingest("t", "a", 1, true)], BASE);
    assert_eq!(store.read(0, 10).unwrap(), Vec::new(), "no sink: nothing appended");
    assert_eq!(store.last(), 0);
    assert_eq!(store.pending_bytes("t"), 0);
}

pub fn records_follow_the_write<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    let store = backend.open(&place);
    store.set_sinks(&["hook"]).unwrap();
    assert_eq!(store.cursor("hook").unwrap(), Some(0));
    assert_eq!(store.cursor("other").unwrap(), None);
    let mut dup = ingest("t", "a", 3, true);
    dup.message_id = Some(Arc::from("m1"));
    let mut command = ingest("t", "b", 4, true);
    command.channel = Channel::Commands;
    let batch = [ingest("t", "a", 1, true), ingest("t", "a", 2, false), dup.clone(), dup, command];
    write(&store, &batch, BASE + 10);
    let records = store.read(0, 10).unwrap();
    let got: Vec<(u64, i64, &str, &str, Channel)> =
        records.iter().map(|r| (r.seq, r.at, &*r.tenant, &*r.resource, r.channel)).collect();
    assert_eq!(
        got,
        vec![
            (1, BASE + 10, "t", "a", Channel::Events),
            (2, BASE + 10, "t", "a", Channel::Events),
            (3, BASE + 10, "t", "b", Channel::Commands),
        ],
        "a record per stored, forwarded message, duplicates and forward=false left out"
    );
    assert_eq!(bodies(&store, 0), ["{\"n\":1}", "{\"n\":3}", "{\"n\":4}"]);
    assert_eq!(records[0].id(), "00000000000000000001");
    assert_eq!(bodies(&store, 1), ["{\"n\":3}", "{\"n\":4}"], "read starts after the cursor given");
    assert_eq!(store.read(0, 2).unwrap().len(), 2, "read honours its limit");
    assert_eq!(store.last(), 3);
}

pub fn cursors_and_records_survive_reopen<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    {
        let store = backend.open(&place);
        store.set_sinks(&["a", "b"]).unwrap();
        write(&store, &[ingest("t", "r", 1, true), ingest("t", "r", 2, true), ingest("t", "r", 3, true)], BASE);
        store.acknowledge("a", 2).unwrap();
        store.acknowledge("b", 1).unwrap();
    }
    let store = backend.open(&place);
    assert_eq!(store.sinks().unwrap(), vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    assert_eq!(bodies(&store, 0).len(), 3);
    assert_eq!(store.last(), 3);
    write(&store, &[ingest("t", "r", 4, true)], BASE);
    assert_eq!(store.read(3, 10).unwrap()[0].seq, 4, "appending continues after a reopen");
    store.set_sinks(&["b", "c"]).unwrap();
    assert_eq!(
        store.sinks().unwrap(),
        vec![("b".to_string(), 1), ("c".to_string(), 4)],
        "a new sink starts at the end"
    );
}

pub fn trim_keeps_what_a_sink_needs<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    let store = backend.open(&place);
    store.set_sinks(&["a", "b"]).unwrap();
    for n in 1..=5 {
        write(&store, &[ingest("t", "r", n, true)], BASE + n);
    }
    store.acknowledge("a", 5).unwrap();
    store.acknowledge("b", 3).unwrap();
    assert_eq!(store.trim(BASE + 3).unwrap(), 2, "acknowledged by both and stored before the cut");
    assert_eq!(store.read(0, 10).unwrap().first().map(|r| r.seq), Some(3));
    assert_eq!(store.trim(BASE + 100).unwrap(), 1, "only what the slower sink acknowledged");
    assert_eq!(store.read(0, 10).unwrap().first().map(|r| r.seq), Some(4));
    drop(store);
    let store = backend.open(&place);
    assert_eq!(store.read(0, 10).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
}

pub fn rewind_by_time<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    let store = backend.open(&place);
    store.set_sinks(&["a"]).unwrap();
    for n in 1..=4 {
        write(&store, &[ingest("t", "r", n, true)], BASE + n * 1000);
    }
    store.acknowledge("a", 4).unwrap();
    assert_eq!(store.rewind("a", BASE + 2500).unwrap(), 2, "before the first record at or after the time");
    assert_eq!(store.cursor("a").unwrap(), Some(2));
    assert_eq!(store.rewind("a", 0).unwrap(), 0);
    assert_eq!(store.rewind("a", BASE + 10_000).unwrap(), 4, "nothing that late: at the end");
    assert!(store.rewind("nope", 0).is_err(), "an unknown sink is an error");
    drop(store);
    let store = backend.open(&place);
    assert_eq!(store.cursor("a").unwrap(), Some(4));
}

pub fn pending_bytes_per_tenant<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    let store = backend.open(&place);
    store.set_sinks(&["a", "b"]).unwrap();
    write(&store, &[ingest("t", "r", 1, true), ingest("u", "r", 2, true), ingest("t", "r", 3, true)], BASE);
    let records = store.read(0, 10).unwrap();
    let size = |i: usize| records[i].size();
    assert_eq!(store.pending_bytes("t"), size(0) + size(2));
    assert_eq!(store.pending_bytes("u"), size(1));
    assert_eq!(store.pending_bytes("tu"), 0, "tenants are exact strings");
    store.acknowledge("a", 3).unwrap();
    assert_eq!(store.pending_bytes("t"), size(0) + size(2), "pending until every sink has it");
    store.acknowledge("b", 1).unwrap();
    assert_eq!(store.pending_bytes("t"), size(2));
    drop(store);
    let store = backend.open(&place);
    assert_eq!(store.pending_bytes("t"), size(2), "counted again after a reopen");
    assert_eq!(store.pending_bytes("u"), size(1));
    store.rewind("a", 0).unwrap();
    store.rewind("b", 0).unwrap();
    assert_eq!(store.pending_bytes("t"), size(0) + size(2), "a rewind makes records pending again");
}

pub fn sequences_never_go_back<B: DataBackend>(backend: &B)
where
    B::Store: OutboxStore,
{
    let place = backend.place();
    {
        let store = backend.open(&place);
        store.set_sinks(&["a"]).unwrap();
        write(&store, &[ingest("t", "r", 1, true), ingest("t", "r", 2, true)], BASE);
        store.acknowledge("a", 2).unwrap();
        store.trim(BASE + 1).unwrap();
        assert_eq!(store.read(0, 10).unwrap(), Vec::new());
    }
    let store = backend.open(&place);
    assert_eq!(store.last(), 2, "the sequence survives an empty outbox");
    write(&store, &[ingest("t", "r", 3, true)], BASE);
    assert_eq!(store.read(0, 10).unwrap()[0].seq, 3);
    store.set_sinks(&[]).unwrap();
    write(&store, &[ingest("t", "r", 4, true)], BASE);
    store.set_sinks(&["a"]).unwrap();
    write(&store, &[ingest("t", "r", 5, true)], BASE);
    assert_eq!(store.last(), 4);
    assert_eq!(store.cursor("a").unwrap(), Some(3), "a sink added again starts at the end");
}
