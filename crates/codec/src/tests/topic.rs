//! Topic names, filters, shared subscriptions and matching.

use proptest::prelude::*;

use crate::topic::{levels_within, matches, parse_shared, valid_topic_filter, valid_topic_name};

#[test]
fn depth_limit_counts_levels_without_the_share_prefix() {
    let cases: &[(&str, usize, bool)] = &[
        ("a", 1, true),
        ("a/b", 1, false),
        ("a/b", 2, true),
        ("/", 1, false),
        ("/", 2, true),
        ("a/+/#", 3, true),
        ("a/+/#", 2, false),
        ("$share/g/a/b", 2, true),
        ("$share/g/a/b", 1, false),
        ("$share", 1, true),
    ];
    for &(s, max, expected) in cases {
        assert_eq!(levels_within(s, max), expected, "{s:?} within {max}");
    }
    let deep = format!("a{}", "/".repeat(60_000));
    assert!(!levels_within(&deep, crate::topic::DEFAULT_MAX_LEVELS));
    assert!(valid_topic_name(&deep) && valid_topic_filter(&deep), "syntax alone allows it");
}

#[test]
fn topic_names() {
    let long = "a".repeat(65_535);
    for valid in ["a", "a/b", "/", "a//b", "$SYS/x", " ", "é/😀", long.as_str()] {
        assert!(valid_topic_name(valid), "{valid:?}");
    }
    let too_long = "a".repeat(65_536);
    for invalid in ["", "+", "a/+", "#", "a/#", "a+b", "a#", "a\0b", too_long.as_str()] {
        assert!(!valid_topic_name(invalid), "{invalid:?}");
    }
}

#[test]
fn topic_filters() {
    for valid in [
        "a",
        "a/b",
        "+",
        "#",
        "+/+",
        "a/+/b",
        "a/#",
        "+/#",
        "/",
        "/+",
        "//#",
        "$SYS/#",
        "$share/g/a/#",
        "$share/group/+",
        "$share",
        "$sharex/a",
        "$share/g/$share/h/a",
    ] {
        assert!(valid_topic_filter(valid), "{valid:?}");
    }
    let too_long = "a".repeat(65_536);
    for invalid in [
        "",
        "a+",
        "+a",
        "a/b+",
        "#/a",
        "a/#/b",
        "a#",
        "##",
        "a\0",
        "$share/",
        "$share/g",
        "$share/g/",
        "$share//a",
        "$share/+/a",
        "$share/#/a",
        "$share/g/a/#/b",
        too_long.as_str(),
    ] {
        assert!(!valid_topic_filter(invalid), "{invalid:?}");
    }
}

#[test]
fn shared_subscriptions() {
    assert_eq!(parse_shared("$share/g/a/b"), Some(("g", "a/b")));
    assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
    assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
    for not_shared in ["a/b", "$share", "$share/", "$share/g", "$share/g/", "$share//a", "$share/g+/a"] {
        assert_eq!(parse_shared(not_shared), None, "{not_shared:?}");
    }
}

#[test]
fn matching() {
    let table = [
        ("a", "a", true),
        ("a", "b", false),
        ("a/b", "a/b", true),
        ("a/b", "a", false),
        ("a", "a/b", false),
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "", true),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a/b/d", false),
        ("+/+", "/a", true),
        ("/+", "/a", true),
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b/c", true),
        ("a/#", "ab", false),
        ("a/#", "b/a", false),
        ("+/#", "a", true),
        ("a/b/#", "a", false),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("+", "$", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/+", "$SYS/x", true),
        ("a/$x/#", "a/$x/y", true),
        ("a/+", "a/$x", true),
        ("A", "a", false),
    ];
    for (filter, topic, expected) in table {
        assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
    }
}

proptest! {
    #[test]
    fn a_topic_name_matches_itself(topic in "[a-z$/]{1,12}") {
        prop_assert!(matches(&topic, &topic));
        prop_assert_eq!(matches("#", &topic), !topic.starts_with('$'));
    }

    #[test]
    fn plus_replaces_any_one_level(levels in proptest::collection::vec("[a-z]{0,3}", 1..5), at in 0usize..5) {
        let topic = levels.join("/");
        let mut filter_levels: Vec<&str> = levels.iter().map(String::as_str).collect();
        let at = at % filter_levels.len();
        filter_levels[at] = "+";
        let filter = filter_levels.join("/");
        prop_assert!(valid_topic_filter(&filter));
        prop_assert!(matches(&filter, &topic));
        let parent = levels[..at].join("/");
        let hash = if at == 0 { "#".to_string() } else { format!("{parent}/#") };
        prop_assert!(matches(&hash, &topic));
    }

    #[test]
    fn valid_names_are_valid_filters(name in "\\PC{1,12}") {
        if valid_topic_name(&name) && !name.starts_with("$share/") {
            prop_assert!(valid_topic_filter(&name));
        }
    }
}

/// The matching rules spelled out level by level, to check the byte-level implementation against.
fn reference_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    for (i, level) in filter.iter().enumerate() {
        match (*level, topic.get(i)) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (level, Some(t)) if level == *t => {}
            _ => return false,
        }
    }
    filter.len() == topic.len()
}

proptest! {
    #[test]
    fn matches_agrees_with_the_level_by_level_rules(filter in "[ab+#/$]{1,8}", topic in "[ab/$]{1,8}") {
        if valid_topic_filter(&filter) && parse_shared(&filter).is_none() {
            prop_assert_eq!(matches(&filter, &topic), reference_matches(&filter, &topic), "{} vs {}", filter, topic);
        }
    }
}
