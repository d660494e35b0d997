//! Sessions by namespace and client id. The index stores session ids only and finds the key
//! in the session itself, so each entry costs 8 bytes rather than a copy of its key.

use std::hash::BuildHasher;

use foldhash::HashMap;
use hashbrown::HashTable;

use crate::auth::Namespace;
use crate::session::Session;
use crate::subtree::SessionId;

/// Every id here is a key of the sessions map it is used with.
#[derive(Default)]
pub(crate) struct SessionIndex {
    table: HashTable<SessionId>,
    hasher: foldhash::fast::RandomState,
}

type Sessions = HashMap<SessionId, Box<Session>>;

impl SessionIndex {
    fn hash(&self, ns: &Namespace, client_id: &str) -> u64 {
        self.hasher.hash_one((ns.as_str(), client_id))
    }

    /// The session of `client_id` in `ns`.
    pub fn get(&self, sessions: &Sessions, ns: &Namespace, client_id: &str) -> Option<SessionId> {
        let hash = self.hash(ns, client_id);
        let found = self
            .table
            .find(hash, |id| sessions.get(id).is_some_and(|s| &s.namespace == ns && &*s.client_id == client_id));
        found.copied()
    }

    /// Index session `id`, which must already be in `sessions` and not yet indexed.
    pub fn insert(&mut self, sessions: &Sessions, id: SessionId) {
        let Some(session) = sessions.get(&id) else { return };
        let hash = self.hash(&session.namespace, &session.client_id);
        let rehash = |other: &SessionId| {
            sessions.get(other).map_or(0, |s| self.hasher.hash_one((s.namespace.as_str(), &*s.client_id)))
        };
        self.table.insert_unique(hash, id, rehash);
    }

    /// Forget session `id`, indexed under `ns` and `client_id`.
    pub fn remove(&mut self, ns: &Namespace, client_id: &str, id: SessionId) {
        let hash = self.hash(ns, client_id);
        if let Ok(entry) = self.table.find_entry(hash, |other| *other == id) {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn session(ns: &str, client_id: &str) -> Box<Session> {
        Box::new(Session::new(Namespace::from_stored(ns), Arc::from(client_id), Arc::from("")))
    }

    #[test]
    fn finds_each_session_by_namespace_and_client_id_through_growth() {
        let mut sessions = Sessions::default();
        let mut index = SessionIndex::default();
        for id in 1..=500u64 {
            let ns = if id % 2 == 0 { "a.example" } else { "b.example" };
            sessions.insert(id, session(ns, &format!("c{}", id / 2)));
            index.insert(&sessions, id);
        }
        // The same client id lives in both namespaces, as two sessions.
        let a = index.get(&sessions, &Namespace::from_stored("a.example"), "c7");
        let b = index.get(&sessions, &Namespace::from_stored("b.example"), "c7");
        assert_eq!((a, b), (Some(14), Some(15)));
        assert_eq!(index.get(&sessions, &Namespace::from_stored("c.example"), "c7"), None);

        index.remove(&Namespace::from_stored("a.example"), "c7", 14);
        sessions.remove(&14);
        assert_eq!(index.get(&sessions, &Namespace::from_stored("a.example"), "c7"), None);
        assert_eq!(index.get(&sessions, &Namespace::from_stored("b.example"), "c7"), Some(15));
        for id in (1..=500u64).filter(|id| *id != 14) {
            let s = &sessions[&id];
            assert_eq!(index.get(&sessions, &s.namespace, &s.client_id), Some(id));
        }
    }
}
