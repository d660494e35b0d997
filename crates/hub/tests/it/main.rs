//! Device Hub tests: the registry on both stores (memory and redb), authentication with every
//! credential form, and the hub as a real broker's authenticator over TCP and TLS (client
//! certificates).

mod auth;
mod broker;
mod cert;
mod registry;
mod tenant_delete;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_hub::{Clock, Hub, HubConfig, Registry};
use switchyard_identity::KeyFile;
use switchyard_storage::{MemoryStore, RegistryStore};

/// A settable clock, epoch ms.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl Default for TestClock {
    /// Starts at the current time.
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(switchyard_broker::now_ms())))
    }
}

impl TestClock {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
    pub fn clock(&self) -> Clock {
        let t = Arc::clone(&self.0);
        Arc::new(move || t.load(Ordering::Relaxed))
    }
}

pub fn registry_on(store: Arc<dyn RegistryStore>, key_file: KeyFile, clock: &TestClock) -> Registry {
    Registry::open(store, key_file, clock.clock(), 1000).expect("registry opens")
}

/// A hub on a fresh memory store.
pub fn memory_hub(config: HubConfig) -> (Arc<Hub>, TestClock) {
    let clock = TestClock::default();
    let registry = registry_on(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), &clock);
    (Hub::new(Arc::new(registry), config), clock)
}
