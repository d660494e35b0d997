//! The listener registry alone: scopes, the slow-reader policy, unregistering and closing.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::data::{Channel, Written};
use switchyard_storage::{Ingest, ResourceKey};

use super::*;

fn key(tenant: &str, resource: &str) -> ResourceKey {
    ResourceKey { tenant: Arc::from(tenant), resource: Arc::from(resource) }
}

fn record(resource: &ResourceKey, channel: Channel, n: i64) -> Ingest {
    Ingest {
        resource: resource.clone(),
        ts: n,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        expires_at: None,
        keep: 100,
        points: Vec::new(),
        channel,
        forward: true,
    }
}

fn events(resource: &ResourceKey) -> Scope {
    Scope::Resource { resource: resource.clone(), channel: Channel::Events }
}

/// Publishes `n` events of `resource` numbered from `first`, one commit each.
fn publish(listeners: &Listeners, resource: &ResourceKey, first: u64, n: u64) {
    for seq in first..first + n {
        listeners.publish(&[record(resource, Channel::Events, seq as i64)], &[Written::Stored { seq }]);
    }
}

fn drain(listener: &mut Listener) -> Vec<String> {
    std::iter::from_fn(|| listener.try_recv().unwrap())
        .map(|h| match h {
            Heard::Message(m) => m.seq.to_string(),
            Heard::Missed(n) => format!("missed {n}"),
        })
        .collect()
}

#[test]
fn a_slow_listener_is_told_what_it_missed_and_others_hear_everything() {
    let listeners = Arc::new(Listeners::default());
    let res = key("t", "r");
    let mut slow = listeners.listen(events(&res), 3);
    let mut fast = listeners.listen(events(&res), 3);
    for seq in 1..=10 {
        publish(&listeners, &res, seq, 1);
        assert_eq!(drain(&mut fast), [seq.to_string()]);
    }
    assert_eq!(drain(&mut slow), ["1", "2", "3", "missed 7"], "the queue stays bounded");
    publish(&listeners, &res, 11, 2);
    assert_eq!(drain(&mut slow), ["11", "12"], "live again once it read");
    assert_eq!(drain(&mut fast), ["11", "12"]);
}

#[test]
fn duplicates_and_other_scopes_are_not_heard() {
    let listeners = Arc::new(Listeners::default());
    let (res, other) = (key("t", "r"), key("t", "r2"));
    let mut commands = listeners.listen(Scope::Resource { resource: res.clone(), channel: Channel::Commands }, 8);
    let mut mine = listeners.listen(events(&res), 8);
    let mut tenant = listeners.listen(Scope::Tenant(Arc::from("t")), 8);
    let mut prefix = listeners.listen(Scope::Tenant(Arc::from("")), 8);
    let batch =
        [record(&res, Channel::Events, 1), record(&other, Channel::Events, 2), record(&res, Channel::Commands, 3)];
    listeners.publish(&batch, &[Written::Stored { seq: 1 }, Written::Duplicate, Written::Stored { seq: 3 }]);
    assert_eq!(drain(&mut mine), ["1"]);
    assert_eq!(drain(&mut commands), ["3"]);
    assert_eq!(drain(&mut tenant), ["1", "3"]);
    assert!(drain(&mut prefix).is_empty());
}

#[tokio::test]
async fn dropping_unregisters_and_closing_ends_every_listener() {
    let listeners = Arc::new(Listeners::default());
    let res = key("t", "r");
    let dropped = listeners.listen(events(&res), 1);
    let mut waiting = listeners.listen(events(&res), 1);
    let mut other_tenant = listeners.listen(Scope::Tenant(Arc::from("u")), 1);
    assert_eq!(listeners.count(), 3);
    drop(dropped);
    assert_eq!(listeners.count(), 2);
    let reader = tokio::spawn(async move { (waiting.recv().await, waiting.recv().await) });
    publish(&listeners, &res, 1, 1);
    listeners.close_tenant("t");
    let (first, second) = reader.await.unwrap();
    assert!(matches!(first, Some(Heard::Message(m)) if m.seq == 1), "what was queued is still read");
    assert_eq!(second, None);
    assert_eq!(listeners.count(), 1);
    listeners.close_all();
    assert_eq!(other_tenant.recv().await, None);
    let mut late = listeners.listen(events(&res), 1);
    assert_eq!(late.try_recv(), Err(ListenerClosed), "no listener after shutdown");
    assert_eq!(listeners.count(), 0);
}
