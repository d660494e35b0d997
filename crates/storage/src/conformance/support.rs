//! Helpers the checks share: op builders, expected snapshots, and a comparison that names the
//! first difference instead of dumping two large snapshots.

use bytes::Bytes;

use crate::{SessionOp, SessionStore, Snapshot, StoredSession};

pub(super) fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn put_session(session: &str, record: &str) -> SessionOp {
    SessionOp::PutSession { session: session.into(), record: bytes(record) }
}

pub(super) fn delete_session(session: &str) -> SessionOp {
    SessionOp::DeleteSession { session: session.into() }
}

pub(super) fn put_message(session: &str, seq: u64, record: &str) -> SessionOp {
    SessionOp::PutMessage { session: session.into(), seq, record: bytes(record) }
}

pub(super) fn add_message(session: &str, seq: u64, record: &str) -> SessionOp {
    SessionOp::AddMessage { session: session.into(), seq, record: bytes(record) }
}

pub(super) fn delete_message(session: &str, seq: u64) -> SessionOp {
    SessionOp::DeleteMessage { session: session.into(), seq }
}

pub(super) fn put_retained(topic: &str, record: &str) -> SessionOp {
    SessionOp::PutRetained { topic: topic.into(), record: bytes(record) }
}

pub(super) fn delete_retained(topic: &str) -> SessionOp {
    SessionOp::DeleteRetained { topic: topic.into() }
}

pub(super) fn put_entry(session: &str, name: &str, record: &str) -> SessionOp {
    SessionOp::PutEntry { session: session.into(), name: name.into(), record: bytes(record) }
}

pub(super) fn delete_entry(session: &str, name: &str) -> SessionOp {
    SessionOp::DeleteEntry { session: session.into(), name: name.into() }
}

pub(super) fn delete_prefix(prefix: &str) -> SessionOp {
    SessionOp::DeletePrefix { prefix: prefix.into() }
}

pub(super) fn stored(session: &str, record: &str, messages: &[(u64, &str)]) -> StoredSession {
    StoredSession {
        session: session.into(),
        record: bytes(record),
        messages: messages.iter().map(|(seq, m)| (*seq, bytes(m))).collect(),
        entries: Vec::new(),
    }
}

/// A stored session with entries (sorted here by name, as a snapshot lists them).
pub(super) fn with_entries(mut session: StoredSession, entries: &[(&str, &str)]) -> StoredSession {
    session.entries = entries.iter().map(|(name, e)| (name.to_string(), bytes(e))).collect();
    session.entries.sort();
    session
}

pub(super) fn owned_stored(session: &str, record: &str, messages: Vec<(u64, String)>) -> StoredSession {
    StoredSession {
        session: session.into(),
        record: bytes(record),
        messages: messages.into_iter().map(|(seq, m)| (seq, m.into())).collect(),
        entries: Vec::new(),
    }
}

/// A snapshot of these sessions, sorted by key, and no retained messages.
pub(super) fn snapshot(sessions: impl IntoIterator<Item = StoredSession>) -> Snapshot {
    let mut sessions: Vec<_> = sessions.into_iter().collect();
    sessions.sort_by(|a, b| a.session.cmp(&b.session));
    Snapshot { sessions, retained: Vec::new() }
}

pub(super) fn commit<S: SessionStore>(store: &S, ops: &[SessionOp]) {
    if let Err(e) = store.commit(ops) {
        panic!("commit of {} ops failed: {e}", ops.len());
    }
}

/// Loads `store` and panics, naming the first difference, unless it holds exactly `expected`.
pub(super) fn check<S: SessionStore>(store: &S, expected: &Snapshot, context: &str) {
    let actual = match store.load() {
        Ok(snapshot) => snapshot,
        Err(e) => panic!("{context}: load failed: {e}"),
    };
    if let Some(difference) = first_difference(&actual, expected) {
        panic!("{context}: {difference}");
    }
}

fn first_difference(actual: &Snapshot, expected: &Snapshot) -> Option<String> {
    let keys = |s: &Snapshot| s.sessions.iter().map(|s| s.session.clone()).collect::<Vec<_>>();
    if keys(actual) != keys(expected) {
        return Some(format!("session keys are {:?}, expected {:?}", keys(actual), keys(expected)));
    }
    for (a, e) in actual.sessions.iter().zip(&expected.sessions) {
        if a.record != e.record {
            return Some(format!(
                "session {:?} record is {}, expected {}",
                a.session,
                show(&a.record),
                show(&e.record)
            ));
        }
        let seqs = |s: &StoredSession| s.messages.iter().map(|m| m.0).collect::<Vec<_>>();
        if seqs(a) != seqs(e) {
            return Some(format!("session {:?} message seqs are {:?}, expected {:?}", a.session, seqs(a), seqs(e)));
        }
        for ((seq, am), (_, em)) in a.messages.iter().zip(&e.messages) {
            if am != em {
                return Some(format!("session {:?} message {seq} is {}, expected {}", a.session, show(am), show(em)));
            }
        }
        let names = |s: &StoredSession| s.entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
        if names(a) != names(e) {
            return Some(format!("session {:?} entries are {:?}, expected {:?}", a.session, names(a), names(e)));
        }
        for ((name, ae), (_, ee)) in a.entries.iter().zip(&e.entries) {
            if ae != ee {
                return Some(format!("session {:?} entry {name:?} is {}, expected {}", a.session, show(ae), show(ee)));
            }
        }
    }
    let topics = |s: &Snapshot| s.retained.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    if topics(actual) != topics(expected) {
        return Some(format!("retained topics are {:?}, expected {:?}", topics(actual), topics(expected)));
    }
    for ((topic, a), (_, e)) in actual.retained.iter().zip(&expected.retained) {
        if a != e {
            return Some(format!("retained {topic:?} is {}, expected {}", show(a), show(e)));
        }
    }
    None
}

/// A record for a failure message: short ones whole, long ones by length and start.
fn show(record: &Bytes) -> String {
    const SHOWN: usize = 48;
    if record.len() <= SHOWN {
        return format!("{record:?}");
    }
    format!("{} bytes starting {:?}…", record.len(), record.slice(..SHOWN))
}
