//! [`PgStore`]: broker state ([`SessionStore`]) in four tables, one transaction per commit.
//!
//! A commit is reduced to its net effect before it reaches the database: the prefixes and
//! sessions it wipes (applied first, to what was stored before the batch), then the last write
//! of each key after the last wipe that covered it, applied as a few batched statements. Ops
//! keep their in-order meaning, and a commit of 10,000 ops is a dozen statements, not 10,000.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use switchyard_storage::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};

use crate::config::{PgConfig, PgError};
use crate::db::{Db, Fail, from_u64_key, successor, text, u64_key};
use crate::sql;

/// Broker state and the identity registry in PostgreSQL; see the [crate docs](crate).
pub struct PgStore {
    pub(crate) db: Db,
}

impl PgStore {
    /// Connects and brings the schema up to date. Blocks; never call it from an async task.
    pub fn open(config: &PgConfig) -> Result<PgStore, PgError> {
        Ok(PgStore { db: Db::open(config)? })
    }
}

/// The net effect of a batch of ops.
#[derive(Default)]
struct Plan<'a> {
    /// Prefixes wiped from stored state, in order.
    prefixes: Vec<&'a str>,
    /// Sessions whose stored record, messages and entries are wiped.
    wiped: BTreeSet<&'a str>,
    sessions: BTreeMap<&'a str, &'a Bytes>,
    /// `None`: delete.
    messages: BTreeMap<(&'a str, u64), Option<&'a Bytes>>,
    entries: BTreeMap<(&'a str, &'a str), Option<&'a Bytes>>,
    retained: BTreeMap<&'a str, Option<&'a Bytes>>,
}

/// Removes every key of `map` whose first part `matches` and that sorts at or after `start`
/// (keys that match are contiguous from there).
fn remove_from<K: Ord + Copy, V>(map: &mut BTreeMap<K, V>, start: K, matches: impl Fn(&K) -> bool) {
    let doomed: Vec<K> = map.range(start..).map(|(k, _)| *k).take_while(|k| matches(k)).collect();
    for key in doomed {
        map.remove(&key);
    }
}

impl<'a> Plan<'a> {
    fn of(ops: &'a [SessionOp]) -> Plan<'a> {
        let mut plan = Plan::default();
        for op in ops {
            match op {
                SessionOp::PutSession { session, record } => {
                    plan.sessions.insert(session, record);
                }
                SessionOp::DeleteSession { session } => {
                    plan.wiped.insert(session);
                    plan.sessions.remove(session.as_str());
                    remove_from(&mut plan.messages, (session.as_str(), 0), |k| k.0 == session);
                    remove_from(&mut plan.entries, (session.as_str(), ""), |k| k.0 == session);
                }
                SessionOp::PutMessage { session, seq, record } | SessionOp::AddMessage { session, seq, record } => {
                    plan.messages.insert((session, *seq), Some(record));
                }
                SessionOp::DeleteMessage { session, seq } => {
                    plan.messages.insert((session, *seq), None);
                }
                SessionOp::PutRetained { topic, record } => {
                    plan.retained.insert(topic, Some(record));
                }
                SessionOp::DeleteRetained { topic } => {
                    plan.retained.insert(topic, None);
                }
                SessionOp::PutEntry { session, name, record } => {
                    plan.entries.insert((session, name), Some(record));
                }
                SessionOp::DeleteEntry { session, name } => {
                    plan.entries.insert((session, name), None);
                }
                SessionOp::DeletePrefix { prefix } => {
                    let p = prefix.as_str();
                    plan.prefixes.push(p);
                    remove_from(&mut plan.sessions, p, |k| k.starts_with(p));
                    remove_from(&mut plan.messages, (p, 0), |k| k.0.starts_with(p));
                    remove_from(&mut plan.entries, (p, ""), |k| k.0.starts_with(p));
                    remove_from(&mut plan.retained, p, |k| k.starts_with(p));
                }
            }
        }
        plan
    }

    async fn apply(&self, txn: &tokio_postgres::Transaction<'_>) -> Result<(), Fail> {
        for prefix in &self.prefixes {
            let end = successor(prefix.as_bytes());
            txn.execute(sql::DELETE_PREFIX, &[&prefix.as_bytes(), &end]).await?;
        }
        if !self.wiped.is_empty() {
            let keys: Vec<&[u8]> = self.wiped.iter().map(|k| k.as_bytes()).collect();
            txn.execute(sql::WIPE_SESSIONS, &[&keys]).await?;
        }
        if !self.sessions.is_empty() {
            let keys: Vec<&[u8]> = self.sessions.keys().map(|k| k.as_bytes()).collect();
            let records: Vec<&[u8]> = self.sessions.values().map(|r| &r[..]).collect();
            txn.execute(sql::PUT_SESSIONS, &[&keys, &records]).await?;
        }
        let (puts, deletes): (Vec<_>, Vec<_>) = self.messages.iter().partition(|(_, r)| r.is_some());
        if !deletes.is_empty() {
            let keys: Vec<&[u8]> = deletes.iter().map(|((k, _), _)| k.as_bytes()).collect();
            let seqs: Vec<i64> = deletes.iter().map(|((_, seq), _)| u64_key(*seq)).collect();
            txn.execute(sql::DELETE_MESSAGES, &[&keys, &seqs]).await?;
        }
        if !puts.is_empty() {
            let keys: Vec<&[u8]> = puts.iter().map(|((k, _), _)| k.as_bytes()).collect();
            let seqs: Vec<i64> = puts.iter().map(|((_, seq), _)| u64_key(*seq)).collect();
            let records: Vec<&[u8]> = puts.iter().filter_map(|(_, r)| r.map(|r| &r[..])).collect();
            txn.execute(sql::PUT_MESSAGES, &[&keys, &seqs, &records]).await?;
        }
        let (puts, deletes): (Vec<_>, Vec<_>) = self.entries.iter().partition(|(_, r)| r.is_some());
        if !deletes.is_empty() {
            let keys: Vec<&[u8]> = deletes.iter().map(|((k, _), _)| k.as_bytes()).collect();
            let names: Vec<&[u8]> = deletes.iter().map(|((_, n), _)| n.as_bytes()).collect();
            txn.execute(sql::DELETE_ENTRIES, &[&keys, &names]).await?;
        }
        if !puts.is_empty() {
            let keys: Vec<&[u8]> = puts.iter().map(|((k, _), _)| k.as_bytes()).collect();
            let names: Vec<&[u8]> = puts.iter().map(|((_, n), _)| n.as_bytes()).collect();
            let records: Vec<&[u8]> = puts.iter().filter_map(|(_, r)| r.map(|r| &r[..])).collect();
            txn.execute(sql::PUT_ENTRIES, &[&keys, &names, &records]).await?;
        }
        let (puts, deletes): (Vec<_>, Vec<_>) = self.retained.iter().partition(|(_, r)| r.is_some());
        if !deletes.is_empty() {
            let topics: Vec<&[u8]> = deletes.iter().map(|(t, _)| t.as_bytes()).collect();
            txn.execute(sql::DELETE_RETAINED, &[&topics]).await?;
        }
        if !puts.is_empty() {
            let topics: Vec<&[u8]> = puts.iter().map(|(t, _)| t.as_bytes()).collect();
            let records: Vec<&[u8]> = puts.iter().filter_map(|(_, r)| r.map(|r| &r[..])).collect();
            txn.execute(sql::PUT_RETAINED, &[&topics, &records]).await?;
        }
        Ok(())
    }
}

/// Rows of `(session, x, record)` sorted by session, consumed session by session.
struct Grouped<T> {
    rows: std::iter::Peekable<std::vec::IntoIter<(String, T, Bytes)>>,
}

impl<T> Grouped<T> {
    /// The rows of `session`, skipping those of sessions sorting before it (never loaded).
    fn take(&mut self, session: &str) -> Vec<(T, Bytes)> {
        while self.rows.next_if(|(s, _, _)| s.as_str() < session).is_some() {}
        let mut out = Vec::new();
        while let Some((_, x, record)) = self.rows.next_if(|(s, _, _)| s == session) {
            out.push((x, record));
        }
        out
    }
}

async fn load(client: &mut tokio_postgres::Client) -> Result<Snapshot, Fail> {
    let txn = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let sessions = txn.query(sql::LOAD_SESSIONS, &[]).await?;
    let messages = txn.query(sql::LOAD_MESSAGES, &[]).await?;
    let entries = txn.query(sql::LOAD_ENTRIES, &[]).await?;
    let retained = txn.query(sql::LOAD_RETAINED, &[]).await?;
    txn.commit().await?;
    let bytes = |row: &tokio_postgres::Row, i: usize| Bytes::from(row.get::<_, Vec<u8>>(i));
    let mut messages = Grouped {
        rows: messages
            .iter()
            .map(|row| Ok((text(row.get(0), "session key")?, from_u64_key(row.get(1)), bytes(row, 2))))
            .collect::<Result<Vec<_>, Fail>>()?
            .into_iter()
            .peekable(),
    };
    let mut entries = Grouped {
        rows: entries
            .iter()
            .map(|row| Ok((text(row.get(0), "session key")?, text(row.get(1), "entry name")?, bytes(row, 2))))
            .collect::<Result<Vec<_>, Fail>>()?
            .into_iter()
            .peekable(),
    };
    let mut snapshot = Snapshot::default();
    for row in &sessions {
        let session = text(row.get(0), "session key")?;
        snapshot.sessions.push(StoredSession {
            messages: messages.take(&session),
            entries: entries.take(&session),
            record: bytes(row, 1),
            session,
        });
    }
    for row in &retained {
        snapshot.retained.push((text(row.get(0), "retained topic")?, bytes(row, 1)));
    }
    Ok(snapshot)
}

impl SessionStore for PgStore {
    fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let plan = Plan::of(ops);
        self.db
            .run(async |client| {
                let txn = client.transaction().await?;
                plan.apply(&txn).await?;
                txn.commit().await?;
                Ok(())
            })
            .map_err(Into::into)
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        self.db.run(async |client| load(client).await).map_err(Into::into)
    }
}
