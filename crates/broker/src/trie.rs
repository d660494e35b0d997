//! A tree of topic levels, the shape the subscription tree and the retained store share. Depth
//! is shaped by clients, so every walk here is a loop, never recursion, and so is dropping one.

use foldhash::HashMap;

/// The first level of `rest` and what follows it (`None` when it was the last level).
pub fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, below)) => (level, Some(below)),
        None => (rest, None),
    }
}

/// What a node holds; an empty value with no children is pruned.
pub trait Value: Default {
    fn is_empty(&self) -> bool;
}

/// One topic level: its children by level name, and its value.
#[derive(Debug, Default)]
pub struct Node<V: Value> {
    pub children: HashMap<Box<str>, Node<V>>,
    pub value: V,
}

impl<V: Value> Node<V> {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && self.value.is_empty()
    }

    /// The value at `path` (levels separated by `/`), creating the branch.
    pub fn entry(&mut self, path: &str) -> &mut V {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        &mut node.value
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Node<V>> {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// The value at `path`, if its node exists.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut V> {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.get_mut(level)?;
        }
        Some(&mut node.value)
    }

    /// If the node at `path` is empty, remove it with every ancestor left empty by that.
    pub fn prune(&mut self, path: &str) {
        // The deepest node on the path that keeps something else: cut below it.
        let mut cut = None;
        let mut node = &*self;
        for (depth, level) in path.split('/').enumerate() {
            if depth == 0 || !node.value.is_empty() || node.children.len() > 1 {
                cut = Some((depth, level));
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if !node.is_empty() {
            return;
        }
        let Some((depth, level)) = cut else { return };
        let mut node = self;
        for level in path.split('/').take(depth) {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        node.children.remove(level);
    }
}

impl<V: Value> Drop for Node<V> {
    /// Dismantles the subtree with an explicit stack: the derived drop would recurse per level.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<V>> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, child)| child));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Value for u32 {
        fn is_empty(&self) -> bool {
            *self == 0
        }
    }

    #[test]
    fn prune_cuts_below_the_deepest_ancestor_still_in_use() {
        let mut root = Node::<u32>::default();
        *root.entry("a/b/c/d") = 1;
        *root.entry("a/b") = 2;
        *root.entry("a/x") = 3;
        *root.get_mut("a/b/c/d").unwrap() = 0;
        root.prune("a/b/c/d");
        assert!(root.get("a/b/c").is_none(), "the empty chain below a/b is gone");
        assert_eq!(root.get("a/b").map(|n| n.value), Some(2));
        *root.get_mut("a/b").unwrap() = 0;
        root.prune("a/b");
        assert!(root.get("a/b").is_none());
        assert_eq!(root.get("a/x").map(|n| n.value), Some(3), "the sibling stays");
        *root.get_mut("a/x").unwrap() = 0;
        root.prune("a/x");
        assert!(root.is_empty(), "everything pruned up to the root");
        root.prune("never/there");
    }
}
