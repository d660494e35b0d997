//! An in-memory [`SessionStore`] and [`RegistryStore`]: the reference the
//! [`conformance`](crate::conformance) suites are checked against, and a stand-in for a real
//! backend in broker and Device Hub tests.
//!
//! Clones share their data, so a test can "restart" a broker by handing a clone of the store it
//! used to a new one, as a file-backed store would be reopened. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::registry::{RegistryError, RegistryOp, RegistryStore, Table, scan_start};
use crate::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};

/// Broker state and registry records kept in memory; clones are handles to the same data.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<String, Bytes>,
    /// Queued messages per session key, kept apart from `sessions` as a backend's tables are.
    messages: BTreeMap<String, BTreeMap<u64, Bytes>>,
    /// Named entries per session key.
    entries: BTreeMap<String, BTreeMap<String, Bytes>>,
    retained: BTreeMap<String, Bytes>,
    /// Registry records: one ordered map per table.
    registry: BTreeMap<Table, BTreeMap<String, Bytes>>,
}

impl State {
    fn apply(&mut self, op: &SessionOp) {
        match op {
            SessionOp::PutSession { session, record } => {
                self.sessions.insert(session.clone(), record.clone());
            }
            SessionOp::DeleteSession { session } => {
                self.sessions.remove(session);
                self.messages.remove(session);
                self.entries.remove(session);
            }
            SessionOp::PutMessage { session, seq, record } | SessionOp::AddMessage { session, seq, record } => {
                self.messages.entry(session.clone()).or_default().insert(*seq, record.clone());
            }
            SessionOp::DeleteMessage { session, seq } => {
                if let Some(queue) = self.messages.get_mut(session) {
                    queue.remove(seq);
                    if queue.is_empty() {
                        self.messages.remove(session);
                    }
                }
            }
            SessionOp::PutRetained { topic, record } => {
                self.retained.insert(topic.clone(), record.clone());
            }
            SessionOp::DeleteRetained { topic } => {
                self.retained.remove(topic);
            }
            SessionOp::PutEntry { session, name, record } => {
                self.entries.entry(session.clone()).or_default().insert(name.clone(), record.clone());
            }
            SessionOp::DeleteEntry { session, name } => {
                if let Some(entries) = self.entries.get_mut(session) {
                    entries.remove(name);
                    if entries.is_empty() {
                        self.entries.remove(session);
                    }
                }
            }
            SessionOp::DeletePrefix { prefix } => {
                let keep = |key: &String| !key.starts_with(prefix.as_str());
                self.sessions.retain(|key, _| keep(key));
                self.messages.retain(|key, _| keep(key));
                self.entries.retain(|key, _| keep(key));
                self.retained.retain(|key, _| keep(key));
            }
        }
    }
}

impl State {
    fn registry_apply(&mut self, op: &RegistryOp) {
        match op {
            RegistryOp::Create { table, key, value } | RegistryOp::Put { table, key, value } => {
                self.registry.entry(*table).or_default().insert(key.clone(), value.clone());
            }
            RegistryOp::Delete { table, key } => {
                if let Some(records) = self.registry.get_mut(table) {
                    records.remove(key);
                }
            }
            RegistryOp::DeletePrefix { table, prefix } => {
                if let Some(records) = self.registry.get_mut(table) {
                    records.retain(|key, _| !key.starts_with(prefix.as_str()));
                }
            }
        }
    }

    /// Whether `key` would exist after `ops` (a batch's earlier ops), without applying them.
    fn exists_after(&self, ops: &[RegistryOp], table: Table, key: &str) -> bool {
        let mut exists = self.registry.get(&table).is_some_and(|records| records.contains_key(key));
        for op in ops {
            match op {
                RegistryOp::Create { table: t, key: k, .. } | RegistryOp::Put { table: t, key: k, .. }
                    if *t == table && k == key =>
                {
                    exists = true;
                }
                RegistryOp::Delete { table: t, key: k } if *t == table && k == key => {
                    exists = false;
                }
                RegistryOp::DeletePrefix { table: t, prefix } if *t == table && key.starts_with(prefix.as_str()) => {
                    exists = false;
                }
                _ => {}
            }
        }
        exists
    }
}

impl MemoryStore {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StorageError> {
        self.state.lock().map_err(|_| StorageError::Backend("memory store poisoned by a panic".into()))
    }
}

impl SessionStore for MemoryStore {
    fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError> {
        // Readers wait for the lock, so they see all of a batch or none of it.
        let mut state = self.state()?;
        for op in ops {
            state.apply(op);
        }
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        let state = self.state()?;
        let sessions = state
            .sessions
            .iter()
            .map(|(session, record)| StoredSession {
                session: session.clone(),
                record: record.clone(),
                messages: state
                    .messages
                    .get(session)
                    .map(|queue| queue.iter().map(|(seq, m)| (*seq, m.clone())).collect())
                    .unwrap_or_default(),
                entries: state
                    .entries
                    .get(session)
                    .map(|entries| entries.iter().map(|(name, e)| (name.clone(), e.clone())).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let retained = state.retained.iter().map(|(topic, record)| (topic.clone(), record.clone())).collect();
        Ok(Snapshot { sessions, retained })
    }
}

impl RegistryStore for MemoryStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Bytes>, StorageError> {
        let state = self.state()?;
        Ok(state.registry.get(&table).and_then(|r| r.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, StorageError> {
        let state = self.state()?;
        let Some(records) = state.registry.get(&table) else {
            return Ok(Vec::new());
        };
        let start = scan_start(prefix, after).map(str::to_owned);
        Ok(records
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        let mut state = self.state()?;
        // Check every Create against the state the batch would have reached, then apply.
        for (i, op) in ops.iter().enumerate() {
            if let RegistryOp::Create { table, key, .. } = op
                && state.exists_after(&ops[..i], *table, key)
            {
                return Err(RegistryError::Conflict { table: *table, key: key.clone() });
            }
        }
        for op in ops {
            state.registry_apply(op);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;
    use crate::conformance::Backend;

    /// Each place is a fresh store; "reopening" is taking another handle to it.
    struct Memory;

    impl Backend for Memory {
        type Store = MemoryStore;
        type Place = MemoryStore;

        fn place(&self) -> MemoryStore {
            MemoryStore::default()
        }

        fn open(&self, place: &MemoryStore) -> MemoryStore {
            place.clone()
        }
    }

    crate::session_store_conformance!(Memory);

    mod registry {
        use crate::MemoryStore;
        use crate::conformance::registry::RegistryBackend;

        struct Memory;

        impl RegistryBackend for Memory {
            type Store = MemoryStore;
            type Place = MemoryStore;

            fn place(&self) -> MemoryStore {
                MemoryStore::default()
            }

            fn open(&self, place: &MemoryStore) -> MemoryStore {
                place.clone()
            }
        }

        crate::registry_store_conformance!(Memory);
    }

    #[test]
    fn run_all_passes() {
        crate::conformance::run_all(&Memory);
    }
}
