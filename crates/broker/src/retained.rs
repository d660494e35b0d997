//! Retained messages of one namespace, by topic level, so a SUBSCRIBE walks only the branches
//! its filter can match. Wildcards and the `$` rule are those of `topic::matches`.

use std::sync::Arc;

use crate::message::Message;
use crate::trie::{Node, Value, split_level};

impl Value for Option<Arc<Message>> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}

/// Retained messages by topic.
#[derive(Debug, Default)]
pub struct Retained {
    root: Node<Option<Arc<Message>>>,
    len: usize,
    /// The [`Message::cost`] of every retained message together.
    bytes: usize,
}

impl Retained {
    /// How many topics hold a retained message.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the retained messages cost together (topic, payload and properties).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cost of the message retained under `topic`, if any.
    pub fn cost_of(&self, topic: &str) -> Option<usize> {
        self.root.get(topic).and_then(|n| n.value.as_ref()).map(|m| m.cost())
    }

    /// Retain `message` under `topic`; returns the message it replaced.
    pub fn insert(&mut self, topic: &str, message: Arc<Message>) -> Option<Arc<Message>> {
        self.bytes += message.cost();
        let replaced = self.root.entry(topic).replace(message);
        self.len += usize::from(replaced.is_none());
        self.bytes -= replaced.as_ref().map_or(0, |m| m.cost());
        replaced
    }

    /// Forget the message retained under `topic`; returns it.
    pub fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let removed = self.root.get_mut(topic)?.take();
        self.root.prune(topic);
        self.len -= usize::from(removed.is_some());
        self.bytes -= removed.as_ref().map_or(0, |m| m.cost());
        removed
    }

    /// Append every retained message whose topic matches the (valid, non-shared) `filter`.
    pub fn matching<'a>(&'a self, filter: &str, out: &mut Vec<&'a Arc<Message>>) {
        type Retain = Option<Arc<Message>>;
        // Each item: a node at some depth and the filter levels still to match below it.
        let mut stack: Vec<(&Node<Retain>, Option<&str>)> = vec![(&self.root, Some(filter))];
        // Subtrees under a `#`, collected whole.
        let mut all: Vec<&Node<Retain>> = Vec::new();
        while let Some((node, rest)) = stack.pop() {
            let at_root = std::ptr::eq(node, &self.root);
            // At the root, a wildcard never matches a level starting with `$` ([MQTT-4.7.2-1]).
            let wild_ok = |level: &str| !(at_root && level.starts_with('$'));
            let Some(rest) = rest else {
                out.extend(node.value.iter());
                continue;
            };
            let (level, below) = split_level(rest);
            match level {
                "#" => {
                    // The parent level too ("a/#" matches "a"), then everything below.
                    out.extend(node.value.iter());
                    all.extend(node.children.iter().filter(|(l, _)| wild_ok(l)).map(|(_, child)| child));
                }
                "+" => {
                    let children = node.children.iter().filter(|(l, _)| wild_ok(l));
                    stack.extend(children.map(|(_, child)| (child, below)));
                }
                _ => {
                    if let Some(child) = node.children.get(level) {
                        stack.push((child, below));
                    }
                }
            }
        }
        while let Some(node) = all.pop() {
            out.extend(node.value.iter());
            all.extend(node.children.values());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_codec::{QoS, topic};

    use super::*;

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: Arc::from(topic),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            expires_at_ms: None,
            properties: Default::default(),
        })
    }

    fn matching(store: &Retained, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(filter, &mut out);
        let mut topics: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        topics.sort();
        topics
    }

    #[test]
    fn a_filter_finds_exactly_what_topic_matches_says() {
        let topics =
            ["a", "a/b", "a/b/c", "a/", "/", "/x", "$SYS/x", "$SYS", "b/$x", "a//b", "x/y/z", "$other/a/b", ""];
        let filters = [
            "#",
            "+",
            "+/+",
            "a/#",
            "a/+",
            "a/+/c",
            "/+",
            "+/#",
            "$SYS/#",
            "$SYS",
            "+/$x",
            "a//b",
            "a/+/+",
            "#/",
            "$other/+/b",
            "a/b/c/#",
            "x/+/z",
            "+/+/+/#",
        ];
        let mut store = Retained::default();
        for t in topics.iter().filter(|t| !t.is_empty()) {
            store.insert(t, message(t));
        }
        for filter in filters.iter().filter(|f| topic::valid_topic_filter(f)) {
            let mut expected: Vec<String> =
                topics.iter().filter(|t| !t.is_empty() && topic::matches(filter, t)).map(|t| t.to_string()).collect();
            expected.sort();
            assert_eq!(matching(&store, filter), expected, "{filter}");
        }
    }

    #[test]
    fn insert_replace_remove_keep_the_count_and_the_bytes() {
        let mut store = Retained::default();
        assert!(store.insert("a/b", message("a/b")).is_none());
        assert_eq!((store.bytes(), store.cost_of("a/b")), (4, Some(4)), "topic and payload");
        let bigger = Arc::new(Message { payload: Bytes::from_static(b"xyz"), ..(*message("a/b")).clone() });
        assert!(store.insert("a/b", bigger).is_some());
        assert!(store.insert("a", message("a")).is_none());
        assert_eq!((store.len(), store.bytes()), (2, 6 + 2));
        assert!(store.remove("a/b").is_some());
        assert!(store.remove("a/b").is_none());
        assert!(store.remove("nothing/here").is_none());
        assert_eq!((store.len(), store.bytes(), store.cost_of("a/b")), (1, 2, None));
        assert!(store.cost_of("a").is_some());
        assert!(store.remove("a").is_some());
        assert!(store.is_empty() && store.root.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn deep_topics_are_walked_without_recursion() {
        let deep = format!("a{}", "/".repeat(100_000));
        let mut store = Retained::default();
        store.insert(&deep, message(&deep));
        assert_eq!(matching(&store, "#").len(), 1);
        assert_eq!(matching(&store, "a/#").len(), 1);
        assert_eq!(matching(&store, &deep).len(), 1);
        assert!(store.remove(&deep).is_some());
        store.insert(&deep, message(&deep));
    }
}
