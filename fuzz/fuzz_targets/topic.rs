//! Arbitrary filter and topic strings through the topic functions: no panics, and the
//! invariants that tie validity, shared-subscription parsing and matching together.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_codec::topic::{matches, parse_shared, valid_topic_filter, valid_topic_name};

fuzz_target!(|input: (&str, &str)| {
    let (filter, topic) = input;
    let name_ok = valid_topic_name(topic);
    if name_ok {
        assert!(!topic.contains(['+', '#', '\0']));
        assert!(matches(topic, topic), "a topic name matches itself: {topic:?}");
        assert_eq!(matches("#", topic), !topic.starts_with('$'));
    }
    if let Some((group, inner)) = parse_shared(filter) {
        assert_eq!(format!("$share/{group}/{inner}"), filter);
        assert!(!group.is_empty() && !group.contains(['+', '#', '/']) && !inner.is_empty());
    }
    if valid_topic_filter(filter) && name_ok {
        let plain = parse_shared(filter).map_or(filter, |(_, inner)| inner);
        let matched = matches(plain, topic);
        if !plain.contains(['+', '#']) {
            assert_eq!(matched, plain == topic);
        } else if matched && !plain.contains('#') {
            assert_eq!(plain.split('/').count(), topic.split('/').count());
        }
    }
});
