//! Data store checks for what live streams rely on: sequence numbers (the SSE event id and
//! resume point) and the commands history beside a resource's events.

use super::data::{BASE, DataBackend, all, key, listed, message_ts, msg, write, write_seq};
use crate::data::{Channel, DataStore, Ingest, MessageStore, Value, Written};

fn seqs(written: &[Written]) -> Vec<u64> {
    written
        .iter()
        .map(|w| match w {
            Written::Stored { seq } => *seq,
            Written::Duplicate => panic!("not stored"),
        })
        .collect()
}

/// Every stored message gets a sequence number, increasing in write order whatever its
/// timestamp, across batches and reopens; the cache serves each message with its number.
pub fn sequence_numbers_increase<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let (res, other) = (key("t", "r"), key("t", "r2"));
    let first = {
        let store = backend.open(&place);
        let a = seqs(&write_seq(
            &store,
            &[msg(&res, BASE + 5, &[]), msg(&other, BASE, &[]), msg(&res, BASE + 1, &[])],
            BASE,
        ));
        let b = seqs(&write_seq(&store, &[msg(&res, BASE + 3, &[])], BASE));
        [a, b].concat()
    };
    assert!(first.windows(2).all(|w| w[0] < w[1]), "increasing: {first:?}");
    let store = backend.open(&place);
    let later = seqs(&write_seq(&store, &[msg(&res, BASE, &[])], BASE));
    assert!(later[0] > first[3], "after a reopen: {later:?} after {first:?}");
    let served: Vec<(i64, u64)> =
        store.messages(&res, all(), 10, BASE).unwrap().into_iter().map(|m| (m.ts, m.seq)).collect();
    assert_eq!(
        served,
        [(BASE + 5, first[0]), (BASE + 3, first[3]), (BASE + 1, first[2]), (BASE, later[0])],
        "newest first by timestamp, each with its number"
    );
    let dup = Ingest { message_id: Some("m".into()), ..msg(&res, BASE, &[]) };
    assert_eq!(write(&store, &[dup.clone(), dup], BASE)[1], Written::Duplicate);
}

/// A command is kept in its resource's commands history ([`crate::ResourceKey::of_channel`]),
/// with its own `keep`, never among the events nor in the metrics.
pub fn commands_are_kept_apart<B: DataBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let res = key("t", "r");
    let commands = res.of_channel(Channel::Commands);
    let command = |ts: i64| Ingest { channel: Channel::Commands, keep: 2, ..msg(&res, ts, &[]) };
    let event = |ts: i64| msg(&res, ts, &[("x", Value::Number(ts as f64))]);
    write(&store, &[event(BASE), command(BASE + 1), command(BASE + 2), event(BASE + 3), command(BASE + 4)], BASE);
    assert_eq!(message_ts(&store, &res, all(), 10, BASE), [BASE + 3, BASE]);
    assert_eq!(message_ts(&store, &commands, all(), 10, BASE), [BASE + 4, BASE + 2], "its own keep");
    assert_eq!(store.current(&res, BASE).unwrap().map(|m| m.ts), Some(BASE + 3));
    assert_eq!(listed(&store, &res, BASE).len(), 1);
    assert!(listed(&store, &commands, BASE).is_empty(), "commands have no metrics");
    assert_eq!(store.delete_messages(&res, all()).unwrap(), 2);
    assert_eq!(message_ts(&store, &commands, all(), 10, BASE).len(), 2, "deleting events keeps commands");
    store.drop_tenant("t").unwrap();
    assert!(message_ts(&store, &commands, all(), 10, BASE).is_empty(), "dropping the tenant drops its commands");
}
