//! Live listeners: in-process readers of committed data (SSE, NDJSON and WebSocket streams).
//!
//! A listener names a [`Scope`] (one resource's events or commands, or a whole tenant) and
//! receives every message of it that a commit made durable, events and commands alike, with the
//! per-resource sequence the store gave it. Listeners hear only what was stored: a repeated
//! `messageId` and `store=false` data are not heard (MQTT subscribers still get the latter).
//!
//! The committer thread feeds every listener after each commit, before it releases that
//! commit's acknowledgements, and never waits for one: each listener has a bounded queue of
//! `capacity` messages. **Slow-reader policy:** when a listener's queue is full, later messages
//! are dropped for that listener only and counted; once it has read what was queued it receives
//! [`Heard::Missed`] with how many it lost, then live messages again. A slow reader therefore
//! costs the committer one lock and a counter increment per message, and stalls neither intake
//! nor other listeners. A stream can fill what it missed from the message cache (its messages
//! carry `seq`), which is what a reconnecting SSE client does with `Last-Event-ID`.
//!
//! A [`Listener`] unregisters itself when dropped; at shutdown every listener hears `None`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use switchyard_storage::data::{Channel, Written};
use switchyard_storage::{Ingest, ResourceKey};
use tokio::sync::Notify;

/// What a listener hears about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One channel (events or commands) of one resource.
    Resource { resource: ResourceKey, channel: Channel },
    /// Every message of a tenant, both channels (the firehose).
    Tenant(Arc<str>),
}

/// A message a commit made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub resource: ResourceKey,
    pub channel: Channel,
    /// The store's sequence number: increasing per resource, in commit order (see
    /// [`Written::Stored`]); the message cache serves it with the message.
    pub seq: u64,
    /// The message's `timestamp`, epoch ms.
    pub ts: i64,
    /// The normalized message as stored.
    pub body: Bytes,
}

/// One thing a listener receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Message(Arc<Committed>),
    /// This many messages were dropped here because the listener's queue was full.
    Missed(u64),
}

/// Every listener, by scope; shared by the committer (which feeds them) and the broker handles.
#[derive(Debug, Default)]
pub struct Listeners {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    by_scope: HashMap<Scope, Vec<(u64, Arc<Slot>)>>,
    closed: bool,
}

/// One listener's queue.
#[derive(Debug)]
struct Slot {
    queue: Mutex<Queue>,
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    /// At most `capacity` messages, then at most one trailing [`Heard::Missed`].
    items: VecDeque<Heard>,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slot {
    fn push(&self, message: &Arc<Committed>) {
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        let messages = q.items.len() - usize::from(matches!(q.items.back(), Some(Heard::Missed(_))));
        match q.items.back_mut() {
            Some(Heard::Missed(n)) => *n += 1,
            _ if messages >= self.capacity => q.items.push_back(Heard::Missed(1)),
            _ => q.items.push_back(Heard::Message(Arc::clone(message))),
        }
        drop(q);
        self.ready.notify_one();
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.ready.notify_one();
    }
}

impl Listeners {
    /// Register a listener of `scope` with a queue of `capacity` messages (at least 1).
    pub fn listen(self: &Arc<Self>, scope: Scope, capacity: usize) -> Listener {
        let slot = Arc::new(Slot { queue: Mutex::default(), ready: Notify::new(), capacity: capacity.max(1) });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut registry = lock(&self.registry);
        if registry.closed {
            slot.close();
        } else {
            registry.by_scope.entry(scope.clone()).or_default().push((id, Arc::clone(&slot)));
        }
        Listener { listeners: Arc::clone(self), scope, id, slot }
    }

    /// How many listeners are registered.
    pub fn count(&self) -> usize {
        lock(&self.registry).by_scope.values().map(Vec::len).sum()
    }

    /// Feed the stored records of a durable commit to their listeners; `written[i]` is what
    /// became of `records[i]`. Never waits for a listener.
    pub fn publish(&self, records: &[Ingest], written: &[Written]) {
        let registry = lock(&self.registry);
        if registry.by_scope.is_empty() {
            return;
        }
        for (record, written) in records.iter().zip(written) {
            let Written::Stored { seq } = *written else { continue };
            let by_resource = Scope::Resource { resource: record.resource.clone(), channel: record.channel };
            let by_tenant = Scope::Tenant(Arc::clone(&record.resource.tenant));
            let slots = [&by_resource, &by_tenant].into_iter().filter_map(|s| registry.by_scope.get(s)).flatten();
            let mut message = None;
            for (_, slot) in slots {
                let message = message.get_or_insert_with(|| {
                    Arc::new(Committed {
                        resource: record.resource.clone(),
                        channel: record.channel,
                        seq,
                        ts: record.ts,
                        body: record.body.clone(),
                    })
                });
                slot.push(message);
            }
        }
    }

    /// Close every listener of `tenant` (the tenant was deleted).
    pub fn close_tenant(&self, tenant: &str) {
        let mut registry = lock(&self.registry);
        registry.by_scope.retain(|scope, slots| {
            let of_tenant = match scope {
                Scope::Resource { resource, .. } => &*resource.tenant == tenant,
                Scope::Tenant(t) => &**t == tenant,
            };
            if of_tenant {
                slots.iter().for_each(|(_, slot)| slot.close());
            }
            !of_tenant
        });
    }

    /// Close every listener and refuse new ones (shutdown).
    pub fn close_all(&self) {
        let mut registry = lock(&self.registry);
        registry.closed = true;
        for (_, slot) in registry.by_scope.drain().flat_map(|(_, slots)| slots) {
            slot.close();
        }
    }

    fn remove(&self, scope: &Scope, id: u64) {
        let mut registry = lock(&self.registry);
        if let Some(slots) = registry.by_scope.get_mut(scope) {
            slots.retain(|(i, _)| *i != id);
            if slots.is_empty() {
                registry.by_scope.remove(scope);
            }
        }
    }
}

/// The receiving end of one listener; dropping it unregisters it.
#[derive(Debug)]
pub struct Listener {
    listeners: Arc<Listeners>,
    scope: Scope,
    id: u64,
    slot: Arc<Slot>,
}

impl Listener {
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The next message or gap; `None` once the listener is closed (shutdown, tenant deleted)
    /// and drained.
    pub async fn recv(&mut self) -> Option<Heard> {
        loop {
            let notified = self.slot.ready.notified();
            {
                let mut q = lock(&self.slot.queue);
                if let Some(item) = q.items.pop_front() {
                    return Some(item);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// What is queued now, without waiting: `Ok(None)` when nothing is, an error once closed and drained.
    pub fn try_recv(&mut self) -> Result<Option<Heard>, ListenerClosed> {
        let mut q = lock(&self.slot.queue);
        match q.items.pop_front() {
            Some(item) => Ok(Some(item)),
            None if q.closed => Err(ListenerClosed),
            None => Ok(None),
        }
    }
}

/// The listener was closed (shutdown or its tenant deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("listener closed")]
pub struct ListenerClosed;

impl Drop for Listener {
    fn drop(&mut self) {
        self.listeners.remove(&self.scope, self.id);
    }
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
