//! Conformance checks for [`RegistryStore`] backends: the behaviour the Device Hub relies on.
//!
//! A backend implements [`RegistryBackend`] and invokes
//! [`registry_store_conformance!`](crate::registry_store_conformance) in a module of its own,
//! which expands to one `#[test]` per check. Beyond the trait docs, the checks pin down:
//! - tables are independent key spaces;
//! - keys are exact byte strings (no normalization), scans return them in byte order, and a
//!   prefix scan never returns a key that merely sorts near the prefix;
//! - paging with `after` and `limit` visits every key once;
//! - a batch with a conflicting `Create` leaves nothing behind, and `Create` sees the batch's
//!   own earlier ops;
//! - records come back byte for byte and survive a reopen.

use bytes::Bytes;

use crate::registry::{RegistryError, RegistryOp, RegistryStore, Table};

/// How the checks get stores of one backend (see [`super::Backend`] for the session suite).
pub trait RegistryBackend {
    /// The store under test.
    type Store: RegistryStore;
    /// Where one store keeps its data; dropped after every store opened on it.
    type Place;
    /// A new, empty place, independent of every other.
    fn place(&self) -> Self::Place;
    /// Opens the store at `place` (again after the previous store there was dropped).
    fn open(&self, place: &Self::Place) -> Self::Store;
}

/// Expands to one `#[test]` per registry check on the [`RegistryBackend`] `$backend`.
#[macro_export]
macro_rules! registry_store_conformance {
    ($backend:expr) => {
        $crate::__registry_store_tests!(
            [
                empty_registry_reads_nothing,
                put_get_round_trip_with_awkward_keys,
                tables_are_independent,
                put_replaces_and_delete_removes,
                create_conflict_applies_nothing,
                create_sees_earlier_ops_of_its_batch,
                scan_prefix_is_exact_and_ordered,
                scan_pages_visit_every_key_once,
                delete_prefix_removes_only_the_prefix,
                values_round_trip_byte_for_byte,
                registry_survives_reopen,
                concurrent_registry_commits_all_land,
            ]
            $backend
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __registry_store_tests {
    ([$($check:ident,)*] $backend:expr) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::registry::$check(&$backend);
            }
        )*
    };
}

/// Keys that trip up prefix scans and orderings (none contains U+0000).
const AWKWARD_KEYS: &[&str] = &[
    "a", "a/", "a/b", "a.b/c", "a0", "a/b/c", "A", "a%", "a_", "é", "e\u{301}", "\u{1}", "\u{7f}", "\u{ffff}",
    "日本/x", "🦀", "", " ",
];

fn put(table: Table, key: &str, value: &str) -> RegistryOp {
    RegistryOp::Put { table, key: key.into(), value: Bytes::copy_from_slice(value.as_bytes()) }
}

fn create(table: Table, key: &str, value: &str) -> RegistryOp {
    RegistryOp::Create { table, key: key.into(), value: Bytes::copy_from_slice(value.as_bytes()) }
}

fn delete(table: Table, key: &str) -> RegistryOp {
    RegistryOp::Delete { table, key: key.into() }
}

fn commit<S: RegistryStore>(store: &S, ops: &[RegistryOp]) {
    if let Err(e) = store.commit(ops) {
        panic!("commit of {} ops failed: {e}", ops.len());
    }
}

fn get<S: RegistryStore>(store: &S, table: Table, key: &str) -> Option<String> {
    match store.get(table, key) {
        Ok(value) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        Err(e) => panic!("get {}/{key:?} failed: {e}", table.name()),
    }
}

fn keys<S: RegistryStore>(store: &S, table: Table, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    match store.scan(table, prefix, after, limit) {
        Ok(entries) => entries.into_iter().map(|(k, _)| k).collect(),
        Err(e) => panic!("scan {} {prefix:?} failed: {e}", table.name()),
    }
}

/// A fresh store reads back nothing, and an empty batch is accepted.
pub fn empty_registry_reads_nothing<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    for table in Table::ALL {
        assert_eq!(get(&store, table, "a"), None, "{}", table.name());
        assert!(keys(&store, table, "", None, usize::MAX).is_empty());
    }
    commit(&store, &[]);
}

/// Records come back under exactly the key they were stored under.
pub fn put_get_round_trip_with_awkward_keys<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let ops: Vec<_> = AWKWARD_KEYS.iter().map(|k| put(Table::Devices, k, &format!("v{k}"))).collect();
    commit(&store, &ops);
    for key in AWKWARD_KEYS {
        assert_eq!(get(&store, Table::Devices, key), Some(format!("v{key}")), "{key:?}");
    }
    assert_eq!(get(&store, Table::Devices, "a/b/"), None);
    assert_eq!(get(&store, Table::Devices, "E\u{301}"), None);
}

/// The same key in two tables is two records.
pub fn tables_are_independent<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let ops: Vec<_> = Table::ALL.iter().map(|t| put(*t, "k", t.name())).collect();
    commit(&store, &ops);
    commit(&store, &[delete(Table::Devices, "k")]);
    for table in Table::ALL {
        let expected = (table != Table::Devices).then(|| table.name().to_owned());
        assert_eq!(get(&store, table, "k"), expected, "{}", table.name());
    }
    commit(&store, &[RegistryOp::DeletePrefix { table: Table::Tenants, prefix: String::new() }]);
    assert_eq!(get(&store, Table::Tenants, "k"), None);
    assert_eq!(get(&store, Table::Meta, "k"), Some("meta".into()));
}

/// `Put` replaces; `Delete` removes, and deleting an absent key is not an error.
pub fn put_replaces_and_delete_removes<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put(Table::Tenants, "t", "1")]);
    commit(&store, &[put(Table::Tenants, "t", "2")]);
    assert_eq!(get(&store, Table::Tenants, "t"), Some("2".into()));
    commit(&store, &[delete(Table::Tenants, "t"), delete(Table::Tenants, "never")]);
    assert_eq!(get(&store, Table::Tenants, "t"), None);
    // Ops apply in order within a batch.
    commit(
        &store,
        &[
            put(Table::Tenants, "t", "3"),
            delete(Table::Tenants, "t"),
            put(Table::Tenants, "u", "4"),
            put(Table::Tenants, "u", "5"),
        ],
    );
    assert_eq!(get(&store, Table::Tenants, "t"), None);
    assert_eq!(get(&store, Table::Tenants, "u"), Some("5".into()));
}

/// A `Create` of an existing key fails the batch with `Conflict`, and no op of it is applied,
/// not even those before the conflicting one.
pub fn create_conflict_applies_nothing<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[create(Table::ApiKeys, "d/k", "first")]);
    let batch = [
        put(Table::Tenants, "d", "changed"),
        delete(Table::Meta, "m"),
        create(Table::ApiKeys, "d/k", "second"),
        put(Table::Devices, "d/x", "x"),
    ];
    match store.commit(&batch) {
        Err(RegistryError::Conflict { table, key }) => {
            assert_eq!((table, key.as_str()), (Table::ApiKeys, "d/k"));
        }
        other => panic!("conflicting create gave {other:?}"),
    }
    assert_eq!(get(&store, Table::ApiKeys, "d/k"), Some("first".into()));
    assert_eq!(get(&store, Table::Tenants, "d"), None);
    assert_eq!(get(&store, Table::Devices, "d/x"), None);
    // The store still works after the refused batch.
    commit(&store, &[create(Table::ApiKeys, "d/k2", "ok")]);
    assert_eq!(get(&store, Table::ApiKeys, "d/k2"), Some("ok".into()));
}

/// `Create` is checked against the batch's earlier ops: after a delete it succeeds, after a
/// put or create of the same key it conflicts.
pub fn create_sees_earlier_ops_of_its_batch<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put(Table::Devices, "a/1", "old")]);
    commit(&store, &[delete(Table::Devices, "a/1"), create(Table::Devices, "a/1", "new")]);
    assert_eq!(get(&store, Table::Devices, "a/1"), Some("new".into()));
    commit(
        &store,
        &[
            RegistryOp::DeletePrefix { table: Table::Devices, prefix: "a/".into() },
            create(Table::Devices, "a/1", "newer"),
        ],
    );
    assert_eq!(get(&store, Table::Devices, "a/1"), Some("newer".into()));
    let twice = [create(Table::Devices, "b/1", "x"), create(Table::Devices, "b/1", "y")];
    assert!(matches!(store.commit(&twice), Err(RegistryError::Conflict { .. })));
    assert_eq!(get(&store, Table::Devices, "b/1"), None);
}

/// A prefix scan returns exactly the keys starting with the prefix, in byte order.
pub fn scan_prefix_is_exact_and_ordered<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let ops: Vec<_> = AWKWARD_KEYS.iter().rev().map(|k| put(Table::Devices, k, k)).collect();
    commit(&store, &ops);
    let mut all: Vec<String> = AWKWARD_KEYS.iter().map(|k| (*k).to_owned()).collect();
    all.sort();
    assert_eq!(keys(&store, Table::Devices, "", None, usize::MAX), all);
    assert_eq!(keys(&store, Table::Devices, "a/", None, usize::MAX), ["a/", "a/b", "a/b/c"]);
    assert_eq!(
        keys(&store, Table::Devices, "a", None, usize::MAX),
        ["a", "a%", "a.b/c", "a/", "a/b", "a/b/c", "a0", "a_"]
    );
    assert_eq!(keys(&store, Table::Devices, "a/b", None, 1), ["a/b"]);
    assert!(keys(&store, Table::Devices, "zz", None, usize::MAX).is_empty());
    assert!(keys(&store, Table::Devices, "a/", None, 0).is_empty());
    // Values come with their keys.
    let entries = store.scan(Table::Devices, "日本", None, 10).unwrap();
    assert_eq!(entries, [("日本/x".to_owned(), Bytes::from("日本/x"))]);
}

/// Paging with `after` = the last key of the previous page visits every key once, in order;
/// an `after` before the prefix, or one that is not itself a key, works too.
pub fn scan_pages_visit_every_key_once<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let ids: Vec<String> = (0..57).map(|i| format!("t/{:03}", i * 7 % 57)).collect();
    let mut ops: Vec<_> = ids.iter().map(|k| put(Table::Devices, k, k)).collect();
    ops.push(put(Table::Devices, "s/x", "before"));
    ops.push(put(Table::Devices, "u/x", "after"));
    commit(&store, &ops);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = keys(&store, Table::Devices, "t/", after.as_deref(), 10);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().cloned();
        seen.extend(page);
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(keys(&store, Table::Devices, "t/", Some("a"), 2), ["t/000", "t/001"]);
    assert_eq!(keys(&store, Table::Devices, "t/", Some("t/0105"), 2), ["t/011", "t/012"]);
    assert!(keys(&store, Table::Devices, "t/", Some("t/056"), 5).is_empty());
    assert!(keys(&store, Table::Devices, "t/", Some("z"), 5).is_empty());
}

/// `DeletePrefix` removes exactly the keys starting with the prefix.
pub fn delete_prefix_removes_only_the_prefix<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let ops: Vec<_> = AWKWARD_KEYS.iter().map(|k| put(Table::ApiKeys, k, k)).collect();
    commit(&store, &ops);
    commit(&store, &[RegistryOp::DeletePrefix { table: Table::ApiKeys, prefix: "a/".into() }]);
    let mut expected: Vec<String> =
        AWKWARD_KEYS.iter().filter(|k| !k.starts_with("a/")).map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(keys(&store, Table::ApiKeys, "", None, usize::MAX), expected);
    assert_eq!(get(&store, Table::ApiKeys, "a.b/c"), Some("a.b/c".into()));
    assert_eq!(get(&store, Table::ApiKeys, "a"), Some("a".into()));
}

/// Empty, binary and large values are stored byte for byte.
pub fn values_round_trip_byte_for_byte<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let every_byte = Bytes::from((0..=255).collect::<Vec<u8>>());
    let large = Bytes::from((0..200 * 1024).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let values = [("empty", Bytes::new()), ("bytes", every_byte), ("large", large)];
    let ops: Vec<_> = values
        .iter()
        .map(|(k, v)| RegistryOp::Put { table: Table::Meta, key: (*k).into(), value: v.clone() })
        .collect();
    commit(&store, &ops);
    for (key, value) in &values {
        let got = store.get(Table::Meta, key).unwrap();
        assert_eq!(got.as_ref(), Some(value), "{key}");
    }
}

/// Everything committed is there after the store is dropped and reopened.
pub fn registry_survives_reopen<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(
        &store,
        &[
            create(Table::Tenants, "a.example", "tenant"),
            put(Table::Devices, "a.example/d1", "device"),
            put(Table::ApiKeys, "a.example/k", "key"),
            put(Table::Meta, "admin", "hash"),
            put(Table::Devices, "a.example/gone", "x"),
        ],
    );
    commit(&store, &[delete(Table::Devices, "a.example/gone")]);
    drop(store);
    let store = backend.open(&place);
    assert_eq!(get(&store, Table::Tenants, "a.example"), Some("tenant".into()));
    assert_eq!(keys(&store, Table::Devices, "a.example/", None, 10), ["a.example/d1"]);
    assert_eq!(get(&store, Table::ApiKeys, "a.example/k"), Some("key".into()));
    assert_eq!(get(&store, Table::Meta, "admin"), Some("hash".into()));
}

/// Commits from several threads all land; creates of one key race and exactly one wins.
pub fn concurrent_registry_commits_all_land<B: RegistryBackend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let winners = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, winners) = (&store, &winners);
            s.spawn(move || {
                for i in 0..25 {
                    commit(store, &[put(Table::Devices, &format!("d/{t}-{i:02}"), "v")]);
                }
                match store.commit(&[create(Table::Tenants, "race", &t.to_string())]) {
                    Ok(()) => {
                        winners.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(RegistryError::Conflict { .. }) => {}
                    Err(e) => panic!("create race failed: {e}"),
                }
            });
        }
    });
    assert_eq!(keys(&store, Table::Devices, "d/", None, usize::MAX).len(), 100);
    assert_eq!(winners.into_inner(), 1);
    assert!(get(&store, Table::Tenants, "race").is_some());
}
