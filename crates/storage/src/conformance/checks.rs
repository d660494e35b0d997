//! The checks themselves, one public function each; [`super`] lists them for the macro.

use bytes::Bytes;

use super::Backend;
use super::support::{
    add_message, bytes, check, commit, delete_entry, delete_message, delete_prefix, delete_retained, delete_session,
    owned_stored, put_entry, put_message, put_retained, put_session, snapshot, stored, with_entries,
};
use crate::{SessionOp, Snapshot, StoredSession};

/// Session keys and topics that trip up prefix scans and orderings: prefixes of one another,
/// separators, SQL `LIKE` wildcards, case, combining and multi-byte characters.
const AWKWARD_KEYS: &[&str] = &[
    "a", "ab", "a/", "a/b", "a:", "a:b", "a b", "a%", "a_", "a\\", "", "A", "Z", "'", "\"", "é", "e\u{301}", "\u{1}",
    "\u{7f}", "\u{ffff}", "日本", "🦀/x",
];

/// Sequence numbers around byte and sign boundaries, in no particular order.
const AWKWARD_SEQS: &[u64] = &[
    u64::MAX,
    256,
    0,
    65_536,
    255,
    1,
    257,
    65_535,
    1 << 32,
    (1 << 32) - 1,
    i64::MAX as u64,
    i64::MAX as u64 + 1,
    65_537,
    2,
    1 << 56,
    u64::MAX - 1,
];

/// A fresh store reads back empty, and an empty batch is accepted.
pub fn empty_store_loads_nothing<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    check(&store, &Snapshot::default(), "fresh store");
    commit(&store, &[]);
    check(&store, &Snapshot::default(), "after an empty batch");
    drop(store);
    let store = backend.open(&place);
    check(&store, &Snapshot::default(), "reopened empty store");
}

/// Sessions come back with their records, sorted by key in byte order.
pub fn sessions_round_trip<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let puts: Vec<_> = AWKWARD_KEYS.iter().rev().map(|key| put_session(key, &format!("record of {key:?}"))).collect();
    let (first, second) = puts.split_at(puts.len() / 2);
    commit(&store, first);
    commit(&store, second);
    let expected = snapshot(AWKWARD_KEYS.iter().map(|key| stored(key, &format!("record of {key:?}"), &[])));
    check(&store, &expected, "sessions with awkward keys");
}

/// Empty, binary and large records are stored byte for byte.
pub fn records_round_trip_byte_for_byte<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let every_byte = Bytes::from((0..=255).collect::<Vec<u8>>());
    let large = Bytes::from((0..300 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let ops = [
        SessionOp::PutSession { session: "s".into(), record: Bytes::new() },
        SessionOp::PutMessage { session: "s".into(), seq: 0, record: Bytes::new() },
        SessionOp::PutMessage { session: "s".into(), seq: 1, record: every_byte.clone() },
        SessionOp::PutMessage { session: "s".into(), seq: 2, record: large.clone() },
        SessionOp::PutRetained { topic: "empty".into(), record: Bytes::new() },
        SessionOp::PutRetained { topic: "large".into(), record: large.clone() },
    ];
    commit(&store, &ops);
    let expected = Snapshot {
        sessions: vec![StoredSession {
            session: "s".into(),
            record: Bytes::new(),
            messages: vec![(0, Bytes::new()), (1, every_byte), (2, large.clone())],
            entries: Vec::new(),
        }],
        retained: vec![("empty".into(), Bytes::new()), ("large".into(), large)],
    };
    check(&store, &expected, "empty, binary and large records");
}

/// `PutSession` on an existing key replaces the record and leaves the messages alone.
pub fn put_session_replaces_record_and_keeps_messages<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put_session("s", "old"), put_message("s", 7, "m7")]);
    commit(&store, &[put_session("s", "new")]);
    let expected = snapshot([stored("s", "new", &[(7, "m7")])]);
    check(&store, &expected, "after replacing the session record");
}

/// `DeleteSession` removes the session and its messages, and nothing stored under any other key,
/// however similar.
pub fn delete_session_removes_only_its_messages<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let message = |key: &str, seq: u64| format!("{key:?}#{seq}");
    let seqs = [0, 1, u64::MAX];
    let mut ops = Vec::new();
    for key in AWKWARD_KEYS {
        ops.push(put_session(key, key));
        ops.extend(seqs.iter().map(|&seq| put_message(key, seq, &message(key, seq))));
    }
    commit(&store, &ops);
    for (deleted, key) in AWKWARD_KEYS.iter().enumerate() {
        commit(&store, &[delete_session(key)]);
        let expected = snapshot(AWKWARD_KEYS[deleted + 1..].iter().map(|key| {
            let messages = seqs.iter().map(|&seq| (seq, message(key, seq))).collect();
            owned_stored(key, key, messages)
        }));
        check(&store, &expected, &format!("after deleting session {key:?}"));
    }
    commit(&store, &[put_session("a", "again")]);
    let expected = snapshot([stored("a", "again", &[])]);
    check(&store, &expected, "a deleted session put again has no messages");
}

/// Messages come back in ascending `seq` order over the whole `u64` range.
pub fn messages_load_in_seq_order<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put_session("s", "s"), put_session("t", "t")]);
    let (first, second) = AWKWARD_SEQS.split_at(AWKWARD_SEQS.len() / 2);
    for half in [first, second] {
        let ops: Vec<_> = half
            .iter()
            .flat_map(|&seq| [put_message("s", seq, &seq.to_string()), put_message("t", seq, &format!("t{seq}"))])
            .collect();
        commit(&store, &ops);
    }
    let mut sorted = AWKWARD_SEQS.to_vec();
    sorted.sort_unstable();
    let s: Vec<_> = sorted.iter().map(|seq| (*seq, seq.to_string())).collect();
    let t: Vec<_> = sorted.iter().map(|seq| (*seq, format!("t{seq}"))).collect();
    let expected = snapshot([owned_stored("s", "s", s), owned_stored("t", "t", t)]);
    check(&store, &expected, "messages with awkward sequence numbers");
}

/// `PutMessage` at an existing `seq` replaces that message.
pub fn put_message_replaces<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put_session("s", "s"), put_message("s", 5, "old")]);
    commit(&store, &[put_message("s", 5, "new")]);
    check(&store, &snapshot([stored("s", "s", &[(5, "new")])]), "after replacing a message");
}

/// `AddMessage` stores like `PutMessage`; added and deleted in one commit, it leaves nothing,
/// and neither disturbs its neighbours nor messages stored by earlier commits.
pub fn added_messages_store_and_cancel<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put_session("s", "s"), put_message("s", 1, "m1")]);
    commit(
        &store,
        &[
            add_message("s", 2, "m2"),
            add_message("s", 3, "m3"),
            put_message("s", 3, "m3 in flight"),
            add_message("s", 4, "m4"),
            delete_message("s", 3),
            delete_message("s", 1),
        ],
    );
    check(&store, &snapshot([stored("s", "s", &[(2, "m2"), (4, "m4")])]), "after adding and cancelling");
    commit(&store, &[delete_message("s", 2), add_message("s", 5, "m5"), delete_session("s")]);
    commit(&store, &[put_session("s", "s")]);
    check(&store, &snapshot([stored("s", "s", &[])]), "an added message goes with its session");
    // A session ended and begun again in one commit reuses its seqs: the old message stays gone.
    commit(&store, &[put_message("s", 1, "old")]);
    commit(&store, &[delete_session("s"), put_session("s", "s"), add_message("s", 1, "new"), delete_message("s", 1)]);
    check(&store, &snapshot([stored("s", "s", &[])]), "a reused seq added and deleted");
}

/// `DeleteMessage` removes one message; an absent `seq` or session is not an error.
pub fn delete_message_removes_one<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(
        &store,
        &[put_session("s", "s"), put_message("s", 1, "m1"), put_message("s", 2, "m2"), put_message("s", 3, "m3")],
    );
    commit(&store, &[delete_message("s", 2)]);
    commit(&store, &[delete_message("s", 99), delete_message("nobody", 1)]);
    let expected = snapshot([stored("s", "s", &[(1, "m1"), (3, "m3")])]);
    check(&store, &expected, "after deleting a message and absent ones");
    commit(&store, &[delete_message("s", 1), delete_message("s", 3)]);
    let expected = snapshot([stored("s", "s", &[])]);
    check(&store, &expected, "a session whose messages are all deleted stays");
}

/// Messages under a key with no session record are not part of the snapshot.
pub fn messages_without_session_are_not_loaded<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(&store, &[put_message("ghost", 1, "m"), put_session("s", "s")]);
    check(&store, &snapshot([stored("s", "s", &[])]), "message without a session");
    commit(&store, &[delete_session("ghost")]);
    check(&store, &snapshot([stored("s", "s", &[])]), "after deleting the absent session");
}

/// Retained messages are put, replaced and deleted by exact topic, apart from sessions.
pub fn retained_put_replace_delete<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let topics: Vec<&str> = AWKWARD_KEYS.iter().copied().chain(["$SYS/broker/uptime", "a/b/c"]).collect();
    let ops: Vec<_> = topics.iter().map(|t| put_retained(t, t)).collect();
    commit(&store, &ops);
    commit(&store, &[put_retained("a/b", "replaced")]);
    commit(&store, &[delete_retained("a"), delete_retained("absent")]);
    // Same strings as session keys: the two namespaces must not touch.
    commit(&store, &[put_session("ab", "session"), delete_session("a/")]);
    commit(&store, &[delete_retained("ab")]);
    let mut retained: Vec<(String, Bytes)> = topics
        .iter()
        .filter(|t| !["a", "ab"].contains(t))
        .map(|t| {
            let record = if *t == "a/b" { "replaced" } else { t };
            (t.to_string(), bytes(record))
        })
        .collect();
    retained.sort();
    let expected = Snapshot { sessions: vec![stored("ab", "session", &[])], retained };
    check(&store, &expected, "retained after puts, replace and deletes");
}

/// Ops inside one batch apply in order: a later op sees the effect of an earlier one.
pub fn ops_apply_in_batch_order<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(
        &store,
        &[put_session("replaced", "old"), put_message("replaced", 9, "old"), put_retained("t-replaced", "old")],
    );
    commit(
        &store,
        &[
            put_session("put-delete", "x"),
            delete_session("put-delete"),
            delete_session("delete-put"),
            put_session("delete-put", "present"),
            put_session("put-put", "1"),
            put_session("put-put", "2"),
            delete_session("replaced"),
            put_session("replaced", "new"),
            put_session("msgs", "msgs"),
            put_message("msgs", 1, "put-delete"),
            delete_message("msgs", 1),
            delete_message("msgs", 2),
            put_message("msgs", 2, "delete-put"),
            put_message("msgs", 3, "first"),
            put_message("msgs", 3, "second"),
            put_session("reborn", "old"),
            put_message("reborn", 1, "gone"),
            delete_session("reborn"),
            put_session("reborn", "new"),
            put_message("reborn", 2, "kept"),
            put_retained("t-put-delete", "x"),
            delete_retained("t-put-delete"),
            delete_retained("t-delete-put"),
            put_retained("t-delete-put", "present"),
            put_retained("t-put-put", "1"),
            put_retained("t-put-put", "2"),
            delete_retained("t-replaced"),
            put_retained("t-replaced", "new"),
        ],
    );
    let expected = Snapshot {
        sessions: snapshot([
            stored("delete-put", "present", &[]),
            stored("msgs", "msgs", &[(2, "delete-put"), (3, "second")]),
            stored("put-put", "2", &[]),
            stored("reborn", "new", &[(2, "kept")]),
            stored("replaced", "new", &[]),
        ])
        .sessions,
        retained: vec![
            ("t-delete-put".into(), bytes("present")),
            ("t-put-put".into(), bytes("2")),
            ("t-replaced".into(), bytes("new")),
        ],
    };
    check(&store, &expected, "after a batch of dependent ops");
}

/// A batch of 10,000 ops is visible in full once committed, and so is one deleting it all.
pub fn large_batch_is_fully_visible<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let mut ops = Vec::with_capacity(10_000);
    let mut sessions = Vec::with_capacity(100);
    for i in 0..100u64 {
        let key = format!("session-{i:03}");
        ops.push(put_session(&key, &key));
        let messages: Vec<_> = (0..99u64).map(|j| (j * 1_000 + i, bytes(&format!("{i}:{j}")))).collect();
        ops.extend(messages.iter().map(|(seq, record)| SessionOp::PutMessage {
            session: key.clone(),
            seq: *seq,
            record: record.clone(),
        }));
        sessions.push(StoredSession { session: key.clone(), record: bytes(&key), messages, entries: Vec::new() });
    }
    assert_eq!(ops.len(), 10_000);
    commit(&store, &ops);
    let expected = Snapshot { sessions, retained: Vec::new() };
    check(&store, &expected, "after a batch of 10,000 puts");
    let deletes: Vec<_> = expected.sessions.iter().map(|s| delete_session(&s.session)).collect();
    commit(&store, &deletes);
    check(&store, &Snapshot::default(), "after deleting every session");
}

/// What was committed, puts and deletes alike, is there after the store is reopened.
pub fn data_survives_reopen<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    commit(
        &store,
        &[
            put_session("a", "a1"),
            put_message("a", 1, "a#1"),
            put_message("a", u64::MAX, "a#max"),
            put_session("b", "b1"),
            put_message("b", 1, "b#1"),
            put_retained("x", "x1"),
            put_retained("y", "y1"),
        ],
    );
    commit(&store, &[put_session("a", "a2"), delete_message("a", 1), delete_session("b"), delete_retained("y")]);
    let expected = Snapshot {
        sessions: vec![stored("a", "a2", &[(u64::MAX, "a#max")])],
        retained: vec![("x".into(), bytes("x1"))],
    };
    check(&store, &expected, "before reopening");
    drop(store);
    let store = backend.open(&place);
    check(&store, &expected, "after reopening");
    commit(&store, &[put_message("a", 2, "a#2"), put_retained("z", "z1")]);
    drop(store);
    let store = backend.open(&place);
    let expected = Snapshot {
        sessions: vec![stored("a", "a2", &[(2, "a#2"), (u64::MAX, "a#max")])],
        retained: vec![("x".into(), bytes("x1")), ("z".into(), bytes("z1"))],
    };
    check(&store, &expected, "after committing to a reopened store");
}

/// Commits from several threads at once all land.
pub fn concurrent_commits_all_land<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let (threads, batches) = (4, 10);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            scope.spawn(move || {
                for b in 0..batches {
                    let key = format!("t{t}-b{b:02}");
                    commit(store, &[put_session(&key, &key), put_message(&key, b, &key)]);
                }
            });
        }
    });
    let expected = snapshot((0..threads).flat_map(|t| {
        (0..batches).map(move |b| {
            let key = format!("t{t}-b{b:02}");
            owned_stored(&key, &key, vec![(b, key.clone())])
        })
    }));
    check(&store, &expected, "after concurrent commits");
}

/// Entries are put, replaced and deleted by exact name, come back sorted by name with their
/// session, and go with it; entries under a key with no session record are not loaded.
pub fn entries_round_trip_and_go_with_their_session<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let long = "n".repeat(70_000);
    let mut ops = vec![put_session("s", "s"), put_session("t", "t"), put_message("s", 1, "m1")];
    ops.extend(AWKWARD_KEYS.iter().map(|name| put_entry("s", name, &format!("entry {name:?}"))));
    ops.extend([put_entry("s", &long, "long"), put_entry("t", "a", "t's a"), put_entry("ghost", "a", "ghost")]);
    commit(&store, &ops);
    commit(&store, &[put_entry("s", "a", "replaced"), delete_entry("s", "ab"), delete_entry("s", "absent")]);
    let mut entries: Vec<(String, String)> = AWKWARD_KEYS
        .iter()
        .filter(|name| **name != "ab")
        .map(|name| (name.to_string(), if *name == "a" { "replaced".into() } else { format!("entry {name:?}") }))
        .collect();
    entries.push((long.clone(), "long".into()));
    let entries: Vec<(&str, &str)> = entries.iter().map(|(n, e)| (n.as_str(), e.as_str())).collect();
    let expected = snapshot([
        with_entries(stored("s", "s", &[(1, "m1")]), &entries),
        with_entries(stored("t", "t", &[]), &[("a", "t's a")]),
    ]);
    check(&store, &expected, "entries with awkward names");
    drop(store);
    let store = backend.open(&place);
    check(&store, &expected, "entries after reopening");
    commit(&store, &[delete_session("s"), put_session("ghost", "now a session")]);
    commit(&store, &[put_session("s", "again")]);
    let expected = snapshot([
        with_entries(stored("ghost", "now a session", &[]), &[("a", "ghost")]),
        stored("s", "again", &[]),
        with_entries(stored("t", "t", &[]), &[("a", "t's a")]),
    ]);
    check(&store, &expected, "entries deleted with their session, and loaded once one exists");
}

/// `DeletePrefix` removes every session (messages and entries too) and retained message whose
/// key starts with the prefix, stored or put earlier in the batch, and nothing else; ops after
/// it in the batch apply.
pub fn delete_prefix_removes_only_matching_keys<B: Backend>(backend: &B) {
    let place = backend.place();
    let store = backend.open(&place);
    let long = format!("3:a.b/{}", "x".repeat(2_000));
    let mut ops = Vec::new();
    for key in ["3:a.b/x", "3:a.b/y", long.as_str(), "4:a.bc/x", "3:a.c/x", "3:a.b", "a.b/x", "13:a.b/x"] {
        ops.extend([put_session(key, key), put_message(key, 1, key), put_entry(key, "e", key), put_retained(key, key)]);
    }
    commit(&store, &ops);
    commit(
        &store,
        &[
            put_session("3:a.b/early", "early"),
            put_message("3:a.b/x", 2, "early"),
            put_retained("3:a.b/t", "early"),
            delete_prefix("3:a.b/"),
            put_session("3:a.b/late", "late"),
            add_message("3:a.b/late", 1, "late"),
            put_entry("3:a.b/late", "e", "late"),
            put_retained("3:a.b/late", "late"),
        ],
    );
    let kept = ["13:a.b/x", "3:a.b", "3:a.c/x", "4:a.bc/x", "a.b/x"];
    let mut sessions: Vec<StoredSession> =
        kept.iter().map(|key| with_entries(stored(key, key, &[(1, key)]), &[("e", key)])).collect();
    sessions.push(with_entries(stored("3:a.b/late", "late", &[(1, "late")]), &[("e", "late")]));
    let mut retained: Vec<(String, Bytes)> = kept.iter().map(|key| (key.to_string(), bytes(key))).collect();
    retained.push(("3:a.b/late".into(), bytes("late")));
    retained.sort();
    let expected = Snapshot { sessions: snapshot(sessions).sessions, retained };
    check(&store, &expected, "after deleting a prefix");
    drop(store);
    let store = backend.open(&place);
    check(&store, &expected, "after reopening");
    commit(&store, &[put_session("3:a.b/x", "reborn")]);
    let mut expected = expected;
    expected.sessions.push(stored("3:a.b/x", "reborn", &[]));
    expected.sessions.sort_by(|a, b| a.session.cmp(&b.session));
    check(&store, &expected, "a dropped session put again has no messages or entries");
}
