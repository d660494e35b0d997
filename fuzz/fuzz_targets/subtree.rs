//! Arbitrary subscribe, unsubscribe, match, retain and clear operations on the subscription tree
//! and the retained store, each answer checked against a plain list and `topic::matches`.
//! Paths come from a small alphabet of levels (wildcards, `$`, empty) so they collide often,
//! and some are a thousand levels deep.

#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use switchyard_broker::fuzzing::{Entry, Retained, SessionId, SubTree};
use switchyard_codec::SubOptions;
use switchyard_codec::topic::{matches, valid_topic_filter, valid_topic_name};

const LEVELS: [&str; 8] = ["a", "b", "", "+", "#", "$s", "c", "a"];

/// A path of levels read from the input: one byte for the depth, one per level (a deep path
/// repeats its last levels).
fn path(bytes: &mut impl Iterator<Item = u8>) -> String {
    let depth = bytes.next().unwrap_or(0);
    let (count, deep) = (usize::from(depth & 7) + 1, depth & 0x80 != 0);
    let mut levels: Vec<&str> = (0..count).map(|_| LEVELS[usize::from(bytes.next().unwrap_or(0) & 7)]).collect();
    if deep {
        let tail = levels.last().copied().unwrap_or("a");
        levels.extend(std::iter::repeat_n(tail, 1_000));
    }
    levels.join("/")
}

/// One subscription as the model keeps it: (filter, session, share).
type Sub = (String, SessionId, Option<String>);

fn sorted(mut v: Vec<(SessionId, Option<String>)>) -> Vec<(SessionId, Option<String>)> {
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let mut tree = SubTree::default();
    let mut subs: Vec<Sub> = Vec::new();
    let mut retained = Retained::default();
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let path = path(&mut bytes);
        let session = SessionId::from((op >> 3) & 3);
        let share = (op & 0x20 != 0).then(|| format!("g\u{0}{path}"));
        match op & 7 {
            0 | 1 if valid_topic_filter(&path) && !path.starts_with("$share/") => {
                let entry = Entry {
                    session,
                    options: SubOptions::default(),
                    subscription_id: None,
                    share: share.as_deref().map(Arc::from),
                };
                let existed = subs.iter().any(|(f, s, g)| *f == path && *s == session && *g == share);
                assert_eq!(tree.insert(&path, entry), existed, "insert {path:?}");
                if !existed {
                    subs.push((path, session, share));
                }
            }
            2 => {
                let before = subs.len();
                subs.retain(|(f, s, g)| !(*f == path && *s == session && *g == share));
                let existed = subs.len() != before;
                let group_left = subs.iter().any(|(f, _, g)| *f == path && *g == share);
                let removal = tree.remove(&path, session, share.as_deref());
                assert_eq!(removal.existed, existed, "remove {path:?}");
                assert_eq!(removal.group_emptied, existed && share.is_some() && !group_left);
            }
            3 if valid_topic_name(&path) => {
                let mut found = Vec::new();
                tree.matches(&path, &mut found);
                let got = sorted(found.iter().map(|e| (e.session, e.share.as_deref().map(String::from))).collect());
                let expected = sorted(
                    subs.iter().filter(|(f, _, _)| matches(f, &path)).map(|(_, s, g)| (*s, g.clone())).collect(),
                );
                assert_eq!(got, expected, "match {path:?}");
            }
            4 if valid_topic_name(&path) => {
                let message = Arc::new(switchyard_broker::Message {
                    topic: Arc::from(path.as_str()),
                    payload: bytes::Bytes::from_static(b"x"),
                    qos: switchyard_codec::QoS::AtMostOnce,
                    retain: true,
                    expires_at_ms: None,
                    properties: Default::default(),
                });
                assert_eq!(retained.insert(&path, message).is_some(), !kept.insert(path));
            }
            5 => {
                assert_eq!(retained.remove(&path).is_some(), kept.remove(&path), "clear {path:?}");
            }
            6 if valid_topic_filter(&path) && !path.starts_with("$share/") => {
                let mut found = Vec::new();
                retained.matching(&path, &mut found);
                let got: BTreeSet<String> = found.iter().map(|m| m.topic.to_string()).collect();
                assert_eq!(got.len(), found.len(), "each retained topic once");
                let expected: BTreeSet<String> = kept.iter().filter(|t| matches(&path, t)).cloned().collect();
                assert_eq!(got, expected, "retained for {path:?}");
            }
            _ => {}
        }
        assert_eq!(retained.len(), kept.len());
    }
    assert_eq!(tree.is_empty(), subs.is_empty());
});
