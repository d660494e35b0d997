//! Broker state (sessions, their queued messages, retained messages) in a fjall log-structured
//! database under `DIR/sessions/`. A commit is one atomic write batch appended to fjall's journal
//! and fdatasynced: one sequential write and one sync, however many operations the batch holds,
//! which suits the broker's stream of short-lived queue entries far better than rewriting B-tree
//! pages.
//!
//! Keyspaces, keyed by the *id* of a session or retained-topic key: `k ‖ key` when the key is at
//! most [`INLINE_KEY`] bytes, else `h ‖ SHA-256(key)` (fjall keys are limited to 64 KiB, MQTT
//! client ids and topics are not quite), in which case the value starts with the full key
//! (`u32 BE length ‖ key`) so loading gives it back:
//! - `sessions`: session id → record;
//! - `messages`: `u16 BE length of the session id ‖ session id ‖ u64 BE seq` → record, so one
//!   session's messages are one prefix, in `seq` order, and no session's prefix is another's;
//! - `entries`: `u16 BE length of the session id ‖ session id ‖ entry-name id` → record (after
//!   the full name when its id is a digest), so one session's entries are one prefix too;
//! - `retained`: topic id → record.
//!
//! `DeletePrefix` finds the sessions and retained topics under its prefix with a prefix scan of
//! the inline ids and a scan of the digest ids (keys longer than [`INLINE_KEY`] are rare).
//!
//! Within a batch, operations are folded in order before anything is written: a message put and
//! deleted by the same batch (a delivery acknowledged before its group commit) costs nothing.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use sha2::{Digest, Sha256};
use switchyard_storage::{SessionOp, Snapshot, StorageError, StoredSession};

/// Directory of the session database inside the data directory.
pub const DIR_NAME: &str = "sessions";

/// Longest key stored as itself; longer ones are stored by digest.
const INLINE_KEY: usize = 1024;

/// Background threads fjall may use for flushing and compaction.
const WORKERS: usize = 1;
/// Block cache: the broker reads this database only at start-up.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) struct SessionDb {
    db: Database,
    sessions: Keyspace,
    messages: Keyspace,
    entries: Keyspace,
    retained: Keyspace,
}

/// Which keyspace a folded write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Space {
    Sessions,
    Messages,
    Entries,
    Retained,
}

/// A batch folded per key, in key order.
type Writes = BTreeMap<(Space, Vec<u8>), Write>;

impl SessionDb {
    pub fn open(dir: &Path) -> Result<SessionDb, StorageError> {
        let path = dir.join(DIR_NAME);
        let db = Database::builder(&path)
            .worker_threads(WORKERS)
            .cache_size(CACHE_BYTES)
            .manual_journal_persist(true)
            .open()
            .map_err(|e| backend(&format!("cannot open {}", path.display()), e))?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| backend(name, e));
        Ok(SessionDb {
            sessions: keyspace("sessions")?,
            messages: keyspace("messages")?,
            entries: keyspace("entries")?,
            retained: keyspace("retained")?,
            db,
        })
    }

    pub fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError> {
        // The batch folded per key, in key order: the last op on a key wins, and a message
        // added and deleted within the batch is not written at all.
        let mut writes = Writes::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                SessionOp::PutSession { session, record } => {
                    writes.insert((Space::Sessions, key_id(session)), Write::Put(keyed_value(session, record)));
                }
                SessionOp::DeleteSession { session } => self.delete_session(&mut writes, session)?,
                SessionOp::AddMessage { session, seq, record } => {
                    match writes.entry((Space::Messages, message_key(session, *seq))) {
                        Entry::Vacant(entry) => {
                            entry.insert(Write::Add(record.clone()));
                        }
                        // Something of this batch is there already (a deleted session's old
                        // message under a reused seq): its delete must still reach the disk.
                        Entry::Occupied(mut entry) => {
                            let fresh = matches!(entry.get(), Write::Add(_));
                            entry.insert(if fresh { Write::Add(record.clone()) } else { Write::Put(record.clone()) });
                        }
                    }
                }
                SessionOp::PutMessage { session, seq, record } => {
                    let key = (Space::Messages, message_key(session, *seq));
                    match writes.get_mut(&key) {
                        // Still nothing on disk under this key.
                        Some(write @ Write::Add(_)) => *write = Write::Add(record.clone()),
                        _ => {
                            writes.insert(key, Write::Put(record.clone()));
                        }
                    }
                }
                SessionOp::DeleteMessage { session, seq } => {
                    let key = (Space::Messages, message_key(session, *seq));
                    if let Some(Write::Add(_)) = writes.get(&key) {
                        writes.remove(&key);
                    } else {
                        writes.insert(key, Write::Delete);
                    }
                }
                SessionOp::PutRetained { topic, record } => {
                    writes.insert((Space::Retained, key_id(topic)), Write::Put(keyed_value(topic, record)));
                }
                SessionOp::DeleteRetained { topic } => {
                    writes.insert((Space::Retained, key_id(topic)), Write::Delete);
                }
                SessionOp::PutEntry { session, name, record } => {
                    writes.insert((Space::Entries, entry_key(session, name)), Write::Put(keyed_value(name, record)));
                }
                SessionOp::DeleteEntry { session, name } => {
                    writes.insert((Space::Entries, entry_key(session, name)), Write::Delete);
                }
                SessionOp::DeletePrefix { prefix } => self.delete_prefix(&mut writes, &ops[..i], prefix)?,
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for ((space, key), write) in writes {
            let keyspace = match space {
                Space::Sessions => &self.sessions,
                Space::Messages => &self.messages,
                Space::Entries => &self.entries,
                Space::Retained => &self.retained,
            };
            match write {
                Write::Put(record) | Write::Add(record) => batch.insert(keyspace, key, record.as_ref()),
                Write::Delete => batch.remove(keyspace, key),
            }
        }
        batch.commit().map_err(|e| backend("commit", e))
    }

    /// Fold the deletion of a session, its messages and its entries into `writes`: earlier
    /// writes of the batch and everything already stored under its prefix.
    fn delete_session(&self, writes: &mut Writes, session: &str) -> Result<(), StorageError> {
        writes.insert((Space::Sessions, key_id(session)), Write::Delete);
        let prefix = message_prefix(session);
        writes
            .retain(|(space, key), _| !(matches!(space, Space::Messages | Space::Entries) && key.starts_with(&prefix)));
        for (space, keyspace) in [(Space::Messages, &self.messages), (Space::Entries, &self.entries)] {
            for entry in keyspace.prefix(&prefix) {
                let key = entry.key().map_err(|e| backend("scan session prefix", e))?;
                writes.insert((space, key.to_vec()), Write::Delete);
            }
        }
        Ok(())
    }

    /// Fold `DeletePrefix`: every session and retained topic under `prefix`, stored or written
    /// by the `earlier` ops of this batch.
    fn delete_prefix(&self, writes: &mut Writes, earlier: &[SessionOp], prefix: &str) -> Result<(), StorageError> {
        let mut sessions = BTreeSet::new();
        let mut topics = BTreeSet::new();
        for op in earlier {
            match op {
                SessionOp::PutSession { session, .. }
                | SessionOp::AddMessage { session, .. }
                | SessionOp::PutMessage { session, .. }
                | SessionOp::PutEntry { session, .. } => {
                    sessions.insert(session.clone());
                }
                SessionOp::PutRetained { topic, .. } => {
                    topics.insert(topic.clone());
                }
                _ => {}
            }
        }
        sessions.extend(self.stored_keys(&self.sessions, prefix)?);
        topics.extend(self.stored_keys(&self.retained, prefix)?);
        for session in sessions.iter().filter(|s| s.starts_with(prefix)) {
            self.delete_session(writes, session)?;
        }
        for topic in topics.iter().filter(|t| t.starts_with(prefix)) {
            writes.insert((Space::Retained, key_id(topic)), Write::Delete);
        }
        Ok(())
    }

    /// The stored keys of `keyspace` (sessions or retained) that start with `prefix`.
    fn stored_keys(&self, keyspace: &Keyspace, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut inline = vec![b'k'];
        inline.extend_from_slice(prefix.as_bytes());
        for guard in keyspace.prefix(&inline) {
            let key = guard.key().map_err(|e| backend("scan prefix", e))?;
            let key = std::str::from_utf8(&key[1..]).map_err(|_| corrupt("key is not UTF-8"))?;
            keys.push(key.to_owned());
        }
        for guard in keyspace.prefix(b"h") {
            let (id, value) = guard.into_inner().map_err(|e| backend("scan digest keys", e))?;
            let (key, _) = split_keyed(&id, &value)?;
            if key.starts_with(prefix) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    pub fn load(&self) -> Result<Snapshot, StorageError> {
        let mut sessions = Vec::new();
        for entry in self.sessions.iter() {
            let (id, value) = entry.into_inner().map_err(|e| backend("read sessions", e))?;
            let (session, record) = split_keyed(&id, &value)?;
            let prefix = message_prefix(&session);
            let mut messages = Vec::new();
            for entry in self.messages.prefix(&prefix) {
                let (key, message) = entry.into_inner().map_err(|e| backend("read messages", e))?;
                let seq: [u8; 8] = key[prefix.len()..].try_into().map_err(|_| corrupt("message key"))?;
                messages.push((u64::from_be_bytes(seq), Bytes::copy_from_slice(&message)));
            }
            let mut entries = Vec::new();
            for entry in self.entries.prefix(&prefix) {
                let (key, value) = entry.into_inner().map_err(|e| backend("read entries", e))?;
                entries.push(split_keyed(&key[prefix.len()..], &value)?);
            }
            // Digest ids do not sort like the names they stand for.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            sessions.push(StoredSession { session, record, messages, entries });
        }
        let mut retained = Vec::new();
        for entry in self.retained.iter() {
            let (id, value) = entry.into_inner().map_err(|e| backend("read retained", e))?;
            retained.push(split_keyed(&id, &value)?);
        }
        Ok(Snapshot { sessions, retained })
    }

    /// True when nothing is stored (used to decide whether to migrate older data in).
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        let empty = |k: &Keyspace, name: &str| k.is_empty().map_err(|e| backend(name, e));
        Ok(empty(&self.sessions, "sessions")? && empty(&self.retained, "retained")?)
    }
}

/// What a batch does to one key.
enum Write {
    Put(Bytes),
    /// A message stored for the first time: nothing is on disk under its key yet.
    Add(Bytes),
    Delete,
}

/// The stored id of a session or retained-topic key (see the module docs).
fn key_id(key: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(id_len(key));
    push_id(&mut id, key);
    id
}

/// The length of [`key_id`]`(key)`.
fn id_len(key: &str) -> usize {
    if key.len() <= INLINE_KEY { 1 + key.len() } else { 1 + 32 }
}

/// Append [`key_id`]`(key)` to `out`.
fn push_id(out: &mut Vec<u8>, key: &str) {
    if key.len() <= INLINE_KEY {
        out.push(b'k');
        out.extend_from_slice(key.as_bytes());
    } else {
        out.push(b'h');
        out.extend_from_slice(&Sha256::digest(key.as_bytes()));
    }
}

/// The stored value for `key`: the record, after the full key when the id is a digest.
fn keyed_value(key: &str, record: &Bytes) -> Bytes {
    if key.len() <= INLINE_KEY {
        return record.clone();
    }
    let mut value = Vec::with_capacity(4 + key.len() + record.len());
    value.extend_from_slice(&(key.len() as u32).to_be_bytes());
    value.extend_from_slice(key.as_bytes());
    value.extend_from_slice(record);
    value.into()
}

/// The key and record back from a stored id and value.
fn split_keyed(id: &[u8], value: &[u8]) -> Result<(String, Bytes), StorageError> {
    let (key, record) = match id.split_first() {
        Some((b'k', key)) => (key, value),
        Some((b'h', _)) => {
            let len: [u8; 4] = value.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("short value"))?;
            let end = 4 + u32::from_be_bytes(len) as usize;
            (value.get(4..end).ok_or_else(|| corrupt("short value"))?, &value[end..])
        }
        _ => return Err(corrupt("unknown key form")),
    };
    let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt("key is not UTF-8"))?;
    Ok((key, Bytes::copy_from_slice(record)))
}

/// The key prefix of one session's messages: its id, length first.
fn message_prefix(session: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(2 + id_len(session));
    push_message_prefix(&mut prefix, session);
    prefix
}

fn push_message_prefix(out: &mut Vec<u8>, session: &str) {
    out.extend_from_slice(&(id_len(session) as u16).to_be_bytes());
    push_id(out, session);
}

/// One entry's key: the session's prefix, then the entry name's id.
fn entry_key(session: &str, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id_len(session) + id_len(name));
    push_message_prefix(&mut key, session);
    push_id(&mut key, name);
    key
}

/// One message's key, built in a single allocation (one per stored or deleted message).
fn message_key(session: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id_len(session) + 8);
    push_message_prefix(&mut key, session);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn backend(context: &str, e: fjall::Error) -> StorageError {
    StorageError::Backend(format!("{context}: {e}"))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("session store: {what}"))
}
