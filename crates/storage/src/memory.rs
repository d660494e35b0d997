//! An in-memory [`SessionStore`]: the reference the [`conformance`](crate::conformance) suite is
//! checked against, and a stand-in for a real backend in broker tests.
//!
//! Clones share their data, so a test can "restart" a broker by handing a clone of the store it
//! used to a new one, as a file-backed store would be reopened. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};

/// Broker state kept in memory; clones are handles to the same data.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<String, Bytes>,
    /// Queued messages per session key, kept apart from `sessions` as a backend's tables are.
    messages: BTreeMap<String, BTreeMap<u64, Bytes>>,
    retained: BTreeMap<String, Bytes>,
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
            }
            SessionOp::PutMessage {
                session,
                seq,
                record,
            } => {
                self.messages
                    .entry(session.clone())
                    .or_default()
                    .insert(*seq, record.clone());
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
        }
    }
}

impl MemoryStore {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StorageError> {
        self.state
            .lock()
            .map_err(|_| StorageError::Backend("memory store poisoned by a panic".into()))
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
            })
            .collect();
        let retained = state
            .retained
            .iter()
            .map(|(topic, record)| (topic.clone(), record.clone()))
            .collect();
        Ok(Snapshot { sessions, retained })
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

    #[test]
    fn run_all_passes() {
        crate::conformance::run_all(&Memory);
    }
}
