//! Last-seen times and message counts, kept in memory and written to the registry in batches.
//!
//! A connection or a publish must not cost a registry write, so [`Activity`] accumulates per
//! device (last seen, messages since the last flush) and the hub flushes it periodically
//! (*default* every 10 s) and at shutdown, in one batch. Reads of a device merge what is pending,
//! so the API is never behind. Only devices with a registry row are written; the rest is dropped
//! at flush. Bounded: beyond [`MAX_PENDING`] devices between two flushes, new devices are not
//! tracked until the next flush (counted as `switchyard_activity_dropped_total`). A crash loses at
//! most one interval of counts.

use std::collections::HashMap;
use std::sync::Mutex;

use switchyard_identity::{Device, DeviceIdentity, Domain};

/// Most devices with pending activity between two flushes.
pub const MAX_PENDING: usize = 1_000_000;

/// Activity of one device since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) last_seen_ms: u64,
    pub(crate) messages: u64,
}

impl Pending {
    fn merge(&mut self, other: Pending) {
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.messages = self.messages.saturating_add(other.messages);
    }

    /// Adds this activity to a registry row.
    pub(crate) fn apply_to(self, device: &mut Device) {
        device.last_seen_ms = device.last_seen_ms.max(Some(self.last_seen_ms));
        device.message_count = device.message_count.saturating_add(self.messages);
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Activity(Mutex<HashMap<DeviceIdentity, Pending>>);

impl Activity {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceIdentity, Pending>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, device: &DeviceIdentity, activity: Pending) {
        let mut map = self.map();
        if let Some(p) = map.get_mut(device) {
            p.merge(activity);
        } else if map.len() < MAX_PENDING {
            map.insert(device.clone(), activity);
        } else {
            metrics::counter!("switchyard_activity_dropped_total").increment(1);
        }
    }

    /// The device connected at `now_ms`.
    pub(crate) fn seen(&self, device: &DeviceIdentity, now_ms: u64) {
        self.record(device, Pending { last_seen_ms: now_ms, messages: 0 });
    }

    /// The device sent a message at `now_ms`.
    pub(crate) fn message(&self, device: &DeviceIdentity, now_ms: u64) {
        self.record(device, Pending { last_seen_ms: now_ms, messages: 1 });
    }

    /// What is pending for one device.
    pub(crate) fn peek(&self, device: &DeviceIdentity) -> Option<Pending> {
        self.map().get(device).copied()
    }

    /// Everything pending, leaving nothing.
    pub(crate) fn take(&self) -> HashMap<DeviceIdentity, Pending> {
        std::mem::take(&mut *self.map())
    }

    /// Puts back what a failed flush took.
    pub(crate) fn restore(&self, pending: HashMap<DeviceIdentity, Pending>) {
        for (device, activity) in pending {
            self.record(&device, activity);
        }
    }

    /// Drops a deleted device's activity.
    pub(crate) fn forget(&self, device: &DeviceIdentity) {
        self.map().remove(device);
    }

    /// Drops a deleted tenant's activity.
    pub(crate) fn forget_domain(&self, domain: &Domain) {
        self.map().retain(|d, _| &d.domain != domain);
    }
}

#[cfg(test)]
mod tests {
    use switchyard_identity::ResourceId;

    use super::*;

    #[test]
    fn accumulates_takes_and_restores() {
        let a = Activity::default();
        let d = DeviceIdentity { domain: Domain::parse("a").unwrap(), resource: ResourceId::parse("x").unwrap() };
        a.seen(&d, 10);
        a.message(&d, 20);
        a.message(&d, 15);
        assert_eq!(a.peek(&d), Some(Pending { last_seen_ms: 20, messages: 2 }));
        let taken = a.take();
        assert_eq!(a.peek(&d), None);
        a.message(&d, 30);
        a.restore(taken);
        assert_eq!(a.peek(&d), Some(Pending { last_seen_ms: 30, messages: 3 }));
        let mut row = Device::new(d.resource.clone(), 0);
        row.message_count = 5;
        row.last_seen_ms = Some(40);
        a.peek(&d).unwrap().apply_to(&mut row);
        assert_eq!((row.last_seen_ms, row.message_count), (Some(40), 8));
        a.forget_domain(&d.domain);
        assert_eq!(a.peek(&d), None);
    }
}
