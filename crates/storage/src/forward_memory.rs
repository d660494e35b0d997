//! The in-memory outbox behind [`MemoryDataStore`](crate::MemoryDataStore): the reference the
//! [outbox conformance suite](crate::conformance::forward) is checked against. Clones share
//! their data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::StorageError;
use crate::data::{Ingest, Written};
use crate::forward::{OutboxRecord, OutboxStore, valid_sink_name};

/// Records, cursors and pending bytes in memory; clones are handles to the same outbox.
#[derive(Debug, Clone, Default)]
pub struct MemoryOutbox {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    records: BTreeMap<u64, OutboxRecord>,
    cursors: BTreeMap<String, u64>,
    last: u64,
    pending: HashMap<Arc<str>, u64>,
}

impl State {
    /// The cursor of the slowest sink.
    fn floor(&self) -> u64 {
        self.cursors.values().copied().min().unwrap_or(self.last)
    }

    fn recount(&mut self) {
        let floor = self.floor();
        let mut pending: HashMap<Arc<str>, u64> = HashMap::new();
        for record in self.records.range(floor.saturating_add(1)..).map(|(_, r)| r) {
            *pending.entry(record.tenant.clone()).or_default() += record.size();
        }
        self.pending = pending;
    }
}

fn unknown(sink: &str) -> StorageError {
    StorageError::Backend(format!("no forwarding sink named {sink:?}"))
}

impl MemoryOutbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a record for every message of `batch` that `written` says was stored and that is
    /// forwarded, if any sink is registered.
    pub fn append(&self, batch: &[Ingest], written: &[Written], now: i64) {
        let mut state = self.lock();
        if state.cursors.is_empty() {
            return;
        }
        for (ingest, _) in batch.iter().zip(written).filter(|(i, w)| i.forward && matches!(w, Written::Stored { .. })) {
            state.last += 1;
            let record = OutboxRecord {
                seq: state.last,
                at: now,
                tenant: ingest.resource.tenant.clone(),
                resource: ingest.resource.resource.clone(),
                channel: ingest.channel,
                body: ingest.body.clone(),
            };
            *state.pending.entry(record.tenant.clone()).or_default() += record.size();
            state.records.insert(record.seq, record);
        }
    }
}

impl OutboxStore for MemoryOutbox {
    fn set_sinks(&self, sinks: &[&str]) -> Result<(), StorageError> {
        if let Some(bad) = sinks.iter().find(|s| !valid_sink_name(s)) {
            return Err(StorageError::Backend(format!("invalid sink name {bad:?}")));
        }
        let mut state = self.lock();
        let last = state.last;
        state.cursors.retain(|name, _| sinks.contains(&name.as_str()));
        for sink in sinks {
            state.cursors.entry(sink.to_string()).or_insert(last);
        }
        state.recount();
        Ok(())
    }

    fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self.lock().cursors.iter().map(|(name, seq)| (name.clone(), *seq)).collect())
    }

    fn read(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let state = self.lock();
        Ok(state.records.range(after.saturating_add(1)..).take(limit).map(|(_, r)| r.clone()).collect())
    }

    fn cursor(&self, sink: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.lock().cursors.get(sink).copied())
    }

    fn acknowledge(&self, sink: &str, seq: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        let last = state.last;
        let cursor = state.cursors.get_mut(sink).ok_or_else(|| unknown(sink))?;
        *cursor = seq.min(last);
        state.recount();
        Ok(())
    }

    fn rewind(&self, sink: &str, from: i64) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let to = match state.records.values().find(|r| r.at >= from) {
            Some(record) => record.seq - 1,
            None => state.last,
        };
        *state.cursors.get_mut(sink).ok_or_else(|| unknown(sink))? = to;
        state.recount();
        Ok(to)
    }

    fn trim(&self, before: i64) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let floor = state.floor();
        let doomed: Vec<u64> =
            state.records.range(..=floor).take_while(|(_, r)| r.at < before).map(|(seq, _)| *seq).collect();
        for seq in &doomed {
            state.records.remove(seq);
        }
        Ok(doomed.len() as u64)
    }

    fn last(&self) -> u64 {
        self.lock().last
    }

    fn pending_bytes(&self, tenant: &str) -> u64 {
        self.lock().pending.get(tenant).copied().unwrap_or(0)
    }
}
