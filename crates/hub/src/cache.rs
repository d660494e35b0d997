//! [`DeviceCache`]: what authentication needs to know of a device's registry row — whether it
//! exists and whether it is blocked — without a store read per connection.
//!
//! Bounded: at most `capacity` devices (*default* 100,000); when full, the entry cached longest
//! is forgotten first. Negative entries ("no row") are cached too, so a tenant without
//! registration pays one store read per device, not one per connection.
//!
//! Coherence: every registry write goes through the hub, which updates the cache after its
//! commit ([`DeviceCache::set`]). A reader that missed reads the store and then fills the cache
//! with [`DeviceCache::fill`], which is ignored if any write happened since the miss (the
//! generation moved), so a stale read never overwrites a newer write.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use switchyard_identity::{DeviceIdentity, Domain};

/// A device's registry state as authentication sees it: `None` = no row, `Some(blocked)`.
pub(crate) type Status = Option<bool>;

/// Default number of devices cached.
pub const DEFAULT_DEVICE_CACHE: usize = 100_000;

#[derive(Debug)]
struct Inner {
    map: HashMap<DeviceIdentity, (Status, u64)>,
    /// Insertion order, for eviction; stale slots (re-inserted keys) are skipped.
    order: VecDeque<(DeviceIdentity, u64)>,
    next_slot: u64,
    /// Bumped by every write, so a fill after a concurrent write is dropped.
    generation: u64,
    capacity: usize,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DeviceCache(Mutex<Inner>);

/// A cache miss: read the store, then [`DeviceCache::fill`] with this.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Miss(u64);

impl DeviceCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(Mutex::new(Inner {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_slot: 0,
            generation: 0,
            capacity: capacity.max(1),
        }))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panic could break half-way that matters beyond one
        // entry; keep serving.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lookup(&self, device: &DeviceIdentity) -> Result<Status, Miss> {
        let inner = self.inner();
        match inner.map.get(device) {
            Some((status, _)) => Ok(*status),
            None => Err(Miss(inner.generation)),
        }
    }

    /// Caches what a read after `miss` found, unless a write happened since.
    pub(crate) fn fill(&self, device: &DeviceIdentity, status: Status, miss: Miss) {
        let mut inner = self.inner();
        if inner.generation == miss.0 {
            inner.insert(device.clone(), status);
        }
    }

    /// Records a committed write.
    pub(crate) fn set(&self, device: &DeviceIdentity, status: Status) {
        let mut inner = self.inner();
        inner.generation += 1;
        inner.insert(device.clone(), status);
    }

    /// Forgets a deleted tenant's devices.
    pub(crate) fn forget_domain(&self, domain: &Domain) {
        let mut inner = self.inner();
        inner.generation += 1;
        inner.map.retain(|d, _| &d.domain != domain);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner().map.len()
    }
}

impl Inner {
    fn insert(&mut self, device: DeviceIdentity, status: Status) {
        if !self.map.contains_key(&device) {
            while self.map.len() >= self.capacity {
                let Some((old, slot)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|(_, s)| *s == slot) {
                    self.map.remove(&old);
                }
            }
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.map.insert(device.clone(), (status, slot));
        self.order.push_back((device, slot));
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order.retain(|(d, s)| map.get(d).is_some_and(|(_, slot)| slot == s));
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_identity::ResourceId;

    use super::*;

    fn dev(domain: &str, id: &str) -> DeviceIdentity {
        DeviceIdentity { domain: Domain::parse(domain).unwrap(), resource: ResourceId::parse(id).unwrap() }
    }

    #[test]
    fn miss_fill_hit() {
        let cache = DeviceCache::new(10);
        let d = dev("a", "x");
        let miss = cache.lookup(&d).unwrap_err();
        cache.fill(&d, Some(false), miss);
        assert_eq!(cache.lookup(&d).unwrap(), Some(false));
        cache.set(&d, Some(true));
        assert_eq!(cache.lookup(&d).unwrap(), Some(true));
        cache.set(&d, None);
        assert_eq!(cache.lookup(&d).unwrap(), None);
    }

    #[test]
    fn a_fill_after_a_write_is_dropped() {
        let cache = DeviceCache::new(10);
        let d = dev("a", "x");
        let miss = cache.lookup(&d).unwrap_err();
        // A block lands between the reader's miss and its fill.
        cache.set(&dev("a", "other"), Some(true));
        cache.fill(&d, Some(false), miss);
        assert!(cache.lookup(&d).is_err());
    }

    #[test]
    fn bounded_oldest_first() {
        let cache = DeviceCache::new(3);
        for i in 0..10 {
            cache.set(&dev("a", &format!("d{i}")), None);
            // Re-setting an entry must not let the queue grow without bound.
            cache.set(&dev("a", &format!("d{i}")), Some(false));
            assert!(cache.len() <= 3);
            assert!(cache.inner().order.len() <= 7);
        }
        assert!(cache.lookup(&dev("a", "d0")).is_err());
        assert_eq!(cache.lookup(&dev("a", "d9")).unwrap(), Some(false));
    }

    #[test]
    fn forget_domain_keeps_others() {
        let cache = DeviceCache::new(10);
        cache.set(&dev("a", "x"), Some(true));
        cache.set(&dev("a.b", "x"), Some(true));
        cache.forget_domain(&Domain::parse("a").unwrap());
        assert!(cache.lookup(&dev("a", "x")).is_err());
        assert_eq!(cache.lookup(&dev("a.b", "x")).unwrap(), Some(true));
    }
}
