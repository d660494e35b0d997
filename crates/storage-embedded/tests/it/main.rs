//! Integration tests of the embedded store: the shared conformance suite, then what is particular
//! to a redb file (where it lives, its lock).

use bytes::Bytes;
use switchyard_storage::conformance::Backend;
use switchyard_storage::{SessionOp, SessionStore, StorageError};
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
fn registry_and_sessions_share_one_file() {
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
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one database file");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(session_keys(&store), ["s"]);
    assert_eq!(store.get(Table::Tenants, "a.example").unwrap(), Some(Bytes::from_static(b"t")));
}
