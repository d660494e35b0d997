//! The forwarding outbox ([`OutboxStore`]) of the embedded data store, in the same fjall
//! database as the messages, so a message and its record are one atomic, fdatasynced batch.
//!
//! # Layout
//! - `outbox`: `u64 BE seq` → `i64 BE at ‖ channel (0 events, 1 commands) ‖ u16 BE length ‖
//!   tenant ‖ u16 BE length ‖ resource ‖ body`.
//! - `outbox_meta`: `last` → the last sequence appended (written with every append, so it
//!   survives an empty outbox); `c/{sink}` → that sink's cursor.
//!
//! In memory: the last sequence, the cursors and each tenant's pending bytes (records after the
//! slowest cursor), counted again when the store opens. Appends are staged by the write path
//! under the outbox lock and applied once their batch committed.
//!
//! Sinks see only records a sync covered (`durable`): an unsynced record lost in a crash gives
//! its sequence, which is also its forwarded `id`, to another record after the restart, so a
//! sink that had already received the first would drop the second as a duplicate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode};
use switchyard_storage::StorageError;
use switchyard_storage::data::{Channel, Ingest, Written};
use switchyard_storage::forward::{OutboxRecord, OutboxStore, RECORD_OVERHEAD, valid_sink_name};

use super::EmbeddedDataStore;
use super::codec::{backend, corrupt};

const LAST: &[u8] = b"last";
/// Most records one `trim` call removes (it is called again by the forwarder).
const TRIM_MAX: usize = 100_000;

/// The outbox's keyspaces and in-memory state.
pub(super) struct Outbox {
    records: Keyspace,
    meta: Keyspace,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    appended: u64,
    /// The last sequence known to be on disk: `appended` once a sync that began after it returned.
    durable: u64,
    cursors: BTreeMap<String, u64>,
    pending: HashMap<Arc<str>, u64>,
}

impl State {
    fn floor(&self) -> u64 {
        self.cursors.values().copied().min().unwrap_or(self.appended)
    }
}

/// Records staged in a write batch, applied to the state once it committed.
pub(super) struct Staged<'a> {
    state: MutexGuard<'a, State>,
    last: u64,
    sizes: Vec<(Arc<str>, u64)>,
}

impl Staged<'_> {
    /// The batch committed: the staged records are in the outbox, and durable if it was
    /// `synced` (with all appended before it: the journal is one).
    pub(super) fn applied(mut self, synced: bool) {
        self.state.appended = self.last;
        if synced {
            self.state.durable = self.last;
        }
        for (tenant, size) in self.sizes {
            *self.state.pending.entry(tenant).or_default() += size;
        }
    }
}

fn cursor_key(sink: &str) -> Vec<u8> {
    [b"c/", sink.as_bytes()].concat()
}

fn encode(at: i64, ingest: &Ingest) -> Vec<u8> {
    let (tenant, resource) = (&ingest.resource.tenant, &ingest.resource.resource);
    let mut out = Vec::with_capacity(13 + tenant.len() + resource.len() + ingest.body.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.push(u8::from(ingest.channel == Channel::Commands));
    for part in [tenant, resource] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&ingest.body);
    out
}

fn seq_of(key: &[u8]) -> Result<u64, StorageError> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| corrupt("outbox key"))?))
}

fn decode(key: &[u8], value: &[u8]) -> Result<OutboxRecord, StorageError> {
    let bad = || corrupt("outbox record");
    let at = i64::from_be_bytes(value.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let channel = match value.get(8) {
        Some(0) => Channel::Events,
        Some(1) => Channel::Commands,
        _ => return Err(bad()),
    };
    let mut at_byte = 9;
    let mut part = || -> Result<Arc<str>, StorageError> {
        let len = value.get(at_byte..at_byte + 2).ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let text = value.get(at_byte + 2..at_byte + 2 + len).ok_or_else(bad)?;
        at_byte += 2 + len;
        Ok(Arc::from(std::str::from_utf8(text).map_err(|_| bad())?))
    };
    let tenant = part()?;
    let resource = part()?;
    let body = Bytes::copy_from_slice(&value[at_byte..]);
    Ok(OutboxRecord { seq: seq_of(key)?, at, tenant, resource, channel, body })
}

fn u64_of(value: &[u8], what: &str) -> Result<u64, StorageError> {
    Ok(u64::from_be_bytes(value.try_into().map_err(|_| corrupt(what))?))
}

impl Outbox {
    /// Its keyspaces (for the write-buffer bound).
    pub(super) fn keyspaces(&self) -> [&Keyspace; 2] {
        [&self.records, &self.meta]
    }

    pub(super) fn open(db: &Database) -> Result<Self, StorageError> {
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| backend(name, e));
        let outbox = Outbox { records: keyspace("outbox")?, meta: keyspace("outbox_meta")?, state: Mutex::default() };
        {
            let mut state = outbox.lock();
            if let Some(last) = outbox.meta.get(LAST).map_err(|e| backend("read outbox", e))? {
                state.appended = u64_of(&last, "outbox sequence")?;
                state.durable = state.appended;
            }
            for guard in outbox.meta.prefix(b"c/") {
                let (key, value) = guard.into_inner().map_err(|e| backend("read outbox cursors", e))?;
                let name = std::str::from_utf8(&key[2..]).map_err(|_| corrupt("sink name"))?;
                state.cursors.insert(name.to_string(), u64_of(&value, "outbox cursor")?);
            }
            outbox.recount(&mut state)?;
        }
        Ok(outbox)
    }

    /// The last sequence appended: what a sync starting now will make durable.
    pub(super) fn appended(&self) -> u64 {
        self.lock().appended
    }

    /// A sync that began when [`Self::appended`] answered `covered` returned: up to it is durable.
    pub(super) fn synced(&self, covered: u64) {
        let mut state = self.lock();
        state.durable = state.durable.max(covered);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes only after what it mirrors is durable, so it stays usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts every tenant's pending bytes from the records after the slowest cursor.
    fn recount(&self, state: &mut State) -> Result<(), StorageError> {
        let mut pending: HashMap<Arc<str>, u64> = HashMap::new();
        for guard in self.records.range(state.floor().saturating_add(1).to_be_bytes()..) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read outbox", e))?;
            let record = decode(&key, &value)?;
            *pending.entry(record.tenant.clone()).or_default() += record.size();
        }
        state.pending = pending;
        Ok(())
    }

    /// Adds to `writes` a record for every message of `batch` stored (per `written`) and
    /// forwarded, if a sink is registered; [`Staged::applied`] once `writes` committed.
    pub(super) fn stage(&self, writes: &mut WriteBatch, batch: &[Ingest], written: &[Written], now: i64) -> Staged<'_> {
        let state = self.lock();
        let mut staged = Staged { last: state.appended, sizes: Vec::new(), state };
        if staged.state.cursors.is_empty() {
            return staged;
        }
        for (ingest, _) in batch.iter().zip(written).filter(|(i, w)| i.forward && matches!(w, Written::Stored { .. })) {
            staged.last += 1;
            let value = encode(now, ingest);
            let size = (ingest.body.len() + ingest.resource.tenant.len() + ingest.resource.resource.len()) as u64
                + RECORD_OVERHEAD;
            staged.sizes.push((ingest.resource.tenant.clone(), size));
            writes.insert(&self.records, staged.last.to_be_bytes().to_vec(), value);
        }
        if staged.last != staged.state.appended {
            writes.insert(&self.meta, LAST.to_vec(), staged.last.to_be_bytes().to_vec());
        }
        staged
    }
}

impl EmbeddedDataStore {
    /// Writes `cursors` durably and makes them the outbox's.
    fn put_cursors(&self, state: &mut State, cursors: BTreeMap<String, u64>) -> Result<(), StorageError> {
        let mut writes = self.db.batch().durability(Some(PersistMode::SyncData));
        for name in state.cursors.keys().filter(|name| !cursors.contains_key(*name)) {
            writes.remove(&self.outbox.meta, cursor_key(name));
        }
        for (name, seq) in &cursors {
            if state.cursors.get(name) != Some(seq) {
                writes.insert(&self.outbox.meta, cursor_key(name), seq.to_be_bytes().to_vec());
            }
        }
        writes.commit().map_err(|e| backend("write outbox cursors", e))?;
        let floor = state.floor();
        state.cursors = cursors;
        let new_floor = state.floor();
        if new_floor > floor {
            // Only the records between the two floors stop being pending.
            for guard in self.outbox.records.range(floor.saturating_add(1).to_be_bytes()..=new_floor.to_be_bytes()) {
                let (key, value) = guard.into_inner().map_err(|e| backend("read outbox", e))?;
                let record = decode(&key, &value)?;
                if let Some(bytes) = state.pending.get_mut(&record.tenant) {
                    *bytes = bytes.saturating_sub(record.size());
                    if *bytes == 0 {
                        state.pending.remove(&record.tenant);
                    }
                }
            }
            Ok(())
        } else if new_floor < floor {
            self.outbox.recount(state)
        } else {
            Ok(())
        }
    }
}

fn unknown(sink: &str) -> StorageError {
    StorageError::Backend(format!("no forwarding sink named {sink:?}"))
}

impl OutboxStore for EmbeddedDataStore {
    fn set_sinks(&self, sinks: &[&str]) -> Result<(), StorageError> {
        if let Some(bad) = sinks.iter().find(|s| !valid_sink_name(s)) {
            return Err(StorageError::Backend(format!("invalid sink name {bad:?}")));
        }
        let mut state = self.outbox.lock();
        let mut cursors: BTreeMap<String, u64> = state
            .cursors
            .iter()
            .filter(|(name, _)| sinks.contains(&name.as_str()))
            .map(|(n, s)| (n.clone(), *s))
            .collect();
        for sink in sinks {
            cursors.entry(sink.to_string()).or_insert(state.durable);
        }
        self.put_cursors(&mut state, cursors)
    }

    fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self.outbox.lock().cursors.iter().map(|(name, seq)| (name.clone(), *seq)).collect())
    }

    fn read(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let durable = self.outbox.lock().durable;
        let mut records = Vec::with_capacity(limit.min(4096));
        if after >= durable {
            return Ok(records);
        }
        let range = after.saturating_add(1).to_be_bytes()..=durable.to_be_bytes();
        for guard in self.outbox.records.range(range).take(limit) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read outbox", e))?;
            records.push(decode(&key, &value)?);
        }
        Ok(records)
    }

    fn cursor(&self, sink: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.outbox.lock().cursors.get(sink).copied())
    }

    fn acknowledge(&self, sink: &str, seq: u64) -> Result<(), StorageError> {
        let mut state = self.outbox.lock();
        if !state.cursors.contains_key(sink) {
            return Err(unknown(sink));
        }
        let mut cursors = state.cursors.clone();
        cursors.insert(sink.to_string(), seq.min(state.durable));
        self.put_cursors(&mut state, cursors)
    }

    fn rewind(&self, sink: &str, from: i64) -> Result<u64, StorageError> {
        let mut state = self.outbox.lock();
        if !state.cursors.contains_key(sink) {
            return Err(unknown(sink));
        }
        let mut to = state.durable;
        for guard in self.outbox.records.range(..=state.durable.to_be_bytes()) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read outbox", e))?;
            let at = i64::from_be_bytes(
                value.get(..8).ok_or_else(|| corrupt("outbox record"))?.try_into().unwrap_or_default(),
            );
            if at >= from {
                to = seq_of(&key)? - 1;
                break;
            }
        }
        let mut cursors = state.cursors.clone();
        cursors.insert(sink.to_string(), to);
        self.put_cursors(&mut state, cursors)?;
        Ok(to)
    }

    fn trim(&self, before: i64) -> Result<u64, StorageError> {
        let floor = self.outbox.lock().floor();
        let mut writes = self.db.batch();
        let mut removed = 0;
        for guard in self.outbox.records.range(..=floor.to_be_bytes()).take(TRIM_MAX) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read outbox", e))?;
            let at = i64::from_be_bytes(
                value.get(..8).ok_or_else(|| corrupt("outbox record"))?.try_into().unwrap_or_default(),
            );
            if at >= before {
                break;
            }
            writes.remove(&self.outbox.records, key);
            removed += 1;
        }
        // Not synced: a trim lost in a crash leaves acknowledged records, trimmed again later.
        writes.commit().map_err(|e| backend("trim outbox", e))?;
        Ok(removed)
    }

    fn last(&self) -> u64 {
        self.outbox.lock().durable
    }

    fn pending_bytes(&self, tenant: &str) -> u64 {
        self.outbox.lock().pending.get(tenant).copied().unwrap_or(0)
    }
}
