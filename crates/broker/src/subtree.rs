//! The subscription trie: topic filters by level, with `+` and `#` as ordinary children, so a
//! publish walks at most two branches per level. Shared subscriptions live in the same trie,
//! tagged with their group; choosing one member per group is the router's job.

use std::sync::Arc;

use switchyard_codec::SubOptions;

use crate::trie::{Node, Value, split_level};

/// Session identity inside the core.
pub type SessionId = u64;

/// One subscription of one session to one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub session: SessionId,
    pub options: SubOptions,
    pub subscription_id: Option<u32>,
    /// `Some("group\u{0}filter")` for a shared subscription.
    pub share: Option<Arc<str>>,
}

impl Value for Vec<Entry> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// What [`SubTree::remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// The subscription existed and is gone.
    pub existed: bool,
    /// It was the last member of its share group.
    pub group_emptied: bool,
}

/// All subscriptions of one namespace.
#[derive(Debug, Default)]
pub struct SubTree {
    root: Node<Vec<Entry>>,
}

impl SubTree {
    /// Add or replace the subscription of `entry.session` to `filter` (same share group).
    /// Returns true when it replaced an existing one.
    pub fn insert(&mut self, filter: &str, entry: Entry) -> bool {
        let entries = self.root.entry(filter);
        if let Some(existing) = entries.iter_mut().find(|e| e.session == entry.session && e.share == entry.share) {
            *existing = entry;
            return true;
        }
        entries.push(entry);
        false
    }

    /// Remove the subscription of `session` to `filter` in `share` group.
    pub fn remove(&mut self, filter: &str, session: SessionId, share: Option<&str>) -> Removal {
        let Some(entries) = self.root.get_mut(filter) else {
            return Removal { existed: false, group_emptied: false };
        };
        let before = entries.len();
        entries.retain(|e| !(e.session == session && e.share.as_deref() == share));
        let existed = entries.len() != before;
        let group_emptied = existed && share.is_some() && !entries.iter().any(|e| e.share.as_deref() == share);
        if entries.is_empty() {
            self.root.prune(filter);
        }
        Removal { existed, group_emptied }
    }

    /// Whether no subscription is left.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Append every entry whose filter matches `topic` to `out` (in no particular order).
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Vec<&'a Entry>) {
        // Each item: a node, the topic levels still to match below it (`None`: all matched),
        // and whether wildcards apply there (not at the root of a `$` topic).
        let mut stack = vec![(&self.root, Some(topic), !topic.starts_with('$'))];
        while let Some((node, rest, wild)) = stack.pop() {
            if wild && let Some(hash) = node.children.get("#") {
                // `#` matches the parent level too ("a/#" matches "a"), and everything below.
                out.extend(hash.value.iter());
            }
            let Some(rest) = rest else {
                out.extend(node.value.iter());
                continue;
            };
            let (level, below) = split_level(rest);
            if let Some(child) = node.children.get(level) {
                stack.push((child, below, true));
            }
            if wild && let Some(plus) = node.children.get("+") {
                stack.push((plus, below, true));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: SessionId) -> Entry {
        Entry { session, options: SubOptions::default(), subscription_id: None, share: None }
    }

    fn matching(tree: &SubTree, topic: &str) -> Vec<SessionId> {
        let mut out = Vec::new();
        tree.matches(topic, &mut out);
        let mut ids: Vec<SessionId> = out.iter().map(|e| e.session).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn filters_match_as_the_specification_says() {
        let cases: &[(&str, &str, bool)] = &[
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("+/+", "/x", true),
            ("/+", "/x", true),
            ("+", "/x", false),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("+/#", "a", true),
            ("a//b", "a//b", true),
        ];
        for (i, (filter, topic, expected)) in cases.iter().enumerate() {
            let mut tree = SubTree::default();
            tree.insert(filter, entry(i as u64));
            assert_eq!(!matching(&tree, topic).is_empty(), *expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut tree = SubTree::default();
        assert!(!tree.insert("a/b", entry(1)));
        assert!(tree.insert("a/b", entry(1)));
        assert!(!tree.insert("a/#", entry(2)));
        assert_eq!(matching(&tree, "a/b"), [1, 2]);
        assert!(tree.remove("a/b", 1, None).existed);
        assert!(!tree.remove("a/b", 1, None).existed);
        assert!(tree.remove("a/#", 2, None).existed);
        assert!(tree.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn shared_and_plain_subscriptions_are_distinct() {
        let mut tree = SubTree::default();
        tree.insert("a", entry(1));
        let shared = Entry { share: Some(Arc::from("g\u{0}a")), ..entry(1) };
        assert!(!tree.insert("a", shared));
        assert_eq!(matching(&tree, "a"), [1, 1]);
        let removed = tree.remove("a", 1, Some("g\u{0}a"));
        assert_eq!(removed, Removal { existed: true, group_emptied: true });
        assert_eq!(matching(&tree, "a"), [1]);
    }

    #[test]
    fn a_group_is_emptied_by_its_last_member() {
        let mut tree = SubTree::default();
        let member = |session| Entry { share: Some(Arc::from("g\u{0}a/+")), ..entry(session) };
        tree.insert("a/+", member(1));
        tree.insert("a/+", member(2));
        tree.insert("a/+", entry(3));
        assert_eq!(tree.remove("a/+", 1, Some("g\u{0}a/+")), Removal { existed: true, group_emptied: false });
        assert_eq!(tree.remove("a/+", 2, Some("g\u{0}a/+")), Removal { existed: true, group_emptied: true });
        assert_eq!(matching(&tree, "a/b"), [3]);
    }

    /// Far deeper than any thread's stack allows for a walk that recurses per level.
    #[test]
    fn a_hundred_thousand_levels_are_walked_and_dropped_without_recursion() {
        let deep = format!("a{}", "/".repeat(100_000));
        let mut tree = SubTree::default();
        tree.insert(&deep, entry(1));
        tree.insert(&format!("{deep}/#"), entry(2));
        tree.insert("a/#", entry(3));
        assert_eq!(matching(&tree, &deep), [1, 2, 3]);
        assert_eq!(matching(&tree, &format!("{deep}/x")), [2, 3]);
        assert!(tree.remove(&deep, 1, None).existed);
        assert_eq!(matching(&tree, &deep), [2, 3]);
        drop(tree);
        let mut tree = SubTree::default();
        tree.insert(&deep, entry(1));
        assert!(tree.remove(&deep, 1, None).existed);
        assert!(tree.is_empty());
    }
}
