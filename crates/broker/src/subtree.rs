//! The subscription trie: topic filters by level, with `+` and `#` as ordinary children, so a
//! publish walks at most two branches per level. Shared subscriptions live in the same trie,
//! tagged with their group; choosing one member per group is the router's job.

use foldhash::HashMap;
use std::sync::Arc;

use switchyard_codec::SubOptions;

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

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    entries: Vec<Entry>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.entries.is_empty()
    }
}

/// All subscriptions of one namespace.
#[derive(Debug, Default)]
pub struct SubTree {
    root: Node,
}

impl SubTree {
    /// Add or replace the subscription of `entry.session` to `filter` (same share group).
    /// Returns true when it replaced an existing one.
    pub fn insert(&mut self, filter: &str, entry: Entry) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        if let Some(existing) = node.entries.iter_mut().find(|e| e.session == entry.session && e.share == entry.share) {
            *existing = entry;
            return true;
        }
        node.entries.push(entry);
        false
    }

    /// Remove the subscription of `session` to `filter` in `share` group. True if it existed.
    pub fn remove(&mut self, filter: &str, session: SessionId, share: Option<&str>) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        remove_at(&mut self.root, &levels, session, share)
    }

    /// Append every entry whose filter matches `topic` to `out`.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Vec<&'a Entry>) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, !dollar, out);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], session: SessionId, share: Option<&str>) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let before = node.entries.len();
        node.entries.retain(|e| !(e.session == session && e.share.as_deref() == share));
        return node.entries.len() != before;
    };
    let Some(child) = node.children.get_mut(*first) else { return false };
    let removed = remove_at(child, rest, session, share);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

/// `wild` is false only at the root of a `$` topic, where `+` and `#` must not match.
fn collect<'a>(node: &'a Node, levels: &[&str], wild: bool, out: &mut Vec<&'a Entry>) {
    if wild && let Some(hash) = node.children.get("#") {
        // `#` matches the parent level too ("a/#" matches "a"), and everything below.
        out.extend(hash.entries.iter());
    }
    let Some((first, rest)) = levels.split_first() else {
        out.extend(node.entries.iter());
        return;
    };
    if let Some(child) = node.children.get(*first) {
        collect(child, rest, true, out);
    }
    if wild && let Some(plus) = node.children.get("+") {
        collect(plus, rest, true, out);
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
        assert!(tree.remove("a/b", 1, None));
        assert!(!tree.remove("a/b", 1, None));
        assert!(tree.remove("a/#", 2, None));
        assert!(tree.root.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn shared_and_plain_subscriptions_are_distinct() {
        let mut tree = SubTree::default();
        tree.insert("a", entry(1));
        let shared = Entry { share: Some(Arc::from("g\u{0}a")), ..entry(1) };
        assert!(!tree.insert("a", shared));
        assert_eq!(matching(&tree, "a"), [1, 1]);
        assert!(tree.remove("a", 1, Some("g\u{0}a")));
        assert_eq!(matching(&tree, "a"), [1]);
    }
}
