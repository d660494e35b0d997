//! Integration tests of the embedded store: the shared conformance suite, then what is particular
//! to it (where its files live, the lock, keys past the engine's limit, the move from the older
//! single-file layout).

mod data;
mod lifecycle;
mod memory;
mod outbox;
mod space;

use bytes::Bytes;
use redb::TableDefinition;
use switchyard_storage::conformance::Backend;
use switchyard_storage::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};
use switchyard_storage_embedded::{EmbeddedStore, FILE_NAME};
use tempfile::TempDir;

/// Each place is a temporary data directory, removed when the check ends.
struct Embedded;

impl Backend for Embedded {
    type Store = EmbeddedStore;
    type Place = TempDir;

    fn place(&self) -> TempDir {
        tempfile::tempdir().expect("create temporary directory")
    }

    fn open(&self, place: &TempDir) -> EmbeddedStore {
        EmbeddedStore::open(place.path()).expect("open embedded store")
    }
}

mod conformance {
    switchyard_storage::session_store_conformance!(super::Embedded);
}

impl switchyard_storage::conformance::registry::RegistryBackend for Embedded {
    type Store = EmbeddedStore;
    type Place = TempDir;

    fn place(&self) -> TempDir {
        tempfile::tempdir().expect("create temporary directory")
    }

    fn open(&self, place: &TempDir) -> EmbeddedStore {
        EmbeddedStore::open(place.path()).expect("open embedded store")
    }
}

mod registry_conformance {
    switchyard_storage::registry_store_conformance!(super::Embedded);
}

fn put_session(session: &str) -> SessionOp {
    SessionOp::PutSession { session: session.into(), record: Bytes::from_static(b"record") }
}

fn session_keys(store: &EmbeddedStore) -> Vec<String> {
    let snapshot = store.load().expect("load");
    snapshot.sessions.into_iter().map(|s| s.session).collect()
}

#[test]
fn open_creates_missing_directories_and_the_file_inside() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data").join("nested");
    let store = EmbeddedStore::open(&dir).unwrap();
    assert_eq!(store.path(), dir.join(FILE_NAME));
    assert!(dir.join(FILE_NAME).is_file());
    assert_eq!(store.load().unwrap(), Default::default());
}

#[test]
fn second_open_of_an_open_store_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).unwrap();
    first.commit(&[put_session("s")]).unwrap();

    match EmbeddedStore::open(dir.path()) {
        Err(StorageError::Backend(message)) => {
            assert!(message.contains("already open"), "{message}");
            assert!(message.contains(FILE_NAME), "{message}");
        }
        other => panic!("second open gave {other:?}"),
    }

    // The refused open did not disturb the first handle.
    first.commit(&[put_session("t")]).unwrap();
    assert_eq!(session_keys(&first), ["s", "t"]);
    drop(first);

    // Once the first handle is gone the store opens again, with everything in it.
    let again = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(session_keys(&again), ["s", "t"]);
}

#[test]
fn open_on_a_path_that_is_a_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(EmbeddedStore::open(&file), Err(StorageError::Backend(_))));
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0xA5; 64 * 1024]).unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(StorageError::Backend(message)) => assert!(message.contains(FILE_NAME), "{message}"),
        other => panic!("opening garbage gave {other:?}"),
    }
    let content = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(content, vec![0xA5; 64 * 1024], "the refused file was modified");
}

#[test]
fn registry_and_sessions_live_side_by_side_in_the_directory() {
    use switchyard_storage::{RegistryOp, RegistryStore, Table};
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    SessionStore::commit(&store, &[put_session("s")]).unwrap();
    RegistryStore::commit(
        &store,
        &[RegistryOp::Put { table: Table::Tenants, key: "a.example".into(), value: Bytes::from_static(b"t") }],
    )
    .unwrap();
    drop(store);
    let mut names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, [FILE_NAME, "sessions"]);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(session_keys(&store), ["s"]);
    assert_eq!(store.get(Table::Tenants, "a.example").unwrap(), Some(Bytes::from_static(b"t")));
}

#[test]
fn keys_longer_than_the_engine_allows_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let long_session = format!("7:a.local/{}", "c".repeat(70_000));
    let long_topic = format!("0:/{}", "t/".repeat(40_000));
    let message = |seq| SessionOp::PutMessage { session: long_session.clone(), seq, record: Bytes::from_static(b"m") };
    store
        .commit(&[
            put_session(&long_session),
            message(1),
            message(2),
            SessionOp::PutRetained { topic: long_topic.clone(), record: Bytes::from_static(b"r") },
        ])
        .unwrap();
    store.commit(&[SessionOp::DeleteMessage { session: long_session.clone(), seq: 1 }]).unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.sessions.len(), 1);
    assert_eq!(snapshot.sessions[0].session, long_session);
    assert_eq!(snapshot.sessions[0].messages, [(2, Bytes::from_static(b"m"))]);
    assert_eq!(snapshot.retained, [(long_topic.clone(), Bytes::from_static(b"r"))]);
    store
        .commit(&[SessionOp::DeleteSession { session: long_session }, SessionOp::DeleteRetained { topic: long_topic }])
        .unwrap();
    assert_eq!(store.load().unwrap(), Default::default());
}

#[test]
fn broker_state_of_the_older_layout_is_moved_once() {
    const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
    const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
    const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SESSIONS).unwrap().insert("0:/old", b"record".as_slice()).unwrap();
        txn.open_table(MESSAGES).unwrap().insert(("0:/old", 7), b"queued".as_slice()).unwrap();
        txn.open_table(RETAINED).unwrap().insert("0:/a/b", b"kept".as_slice()).unwrap();
        txn.commit().unwrap();
    }
    let expected = Snapshot {
        sessions: vec![StoredSession {
            session: "0:/old".into(),
            record: Bytes::from_static(b"record"),
            messages: vec![(7, Bytes::from_static(b"queued"))],
            entries: Vec::new(),
        }],
        retained: vec![("0:/a/b".into(), Bytes::from_static(b"kept"))],
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap(), expected);
    // A change after the move is not undone by opening again.
    store.commit(&[SessionOp::DeleteRetained { topic: "0:/a/b".into() }]).unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap(), Snapshot { retained: vec![], ..expected });
}
