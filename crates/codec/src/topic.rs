//! Topic names and topic filters (section 4.7): validity, the configured depth limit, shared
//! subscriptions (`$share/{group}/{filter}`) and wildcard matching. No allocation anywhere.

const MAX_LEN: usize = 65_535;
const SHARE_PREFIX: &str = "$share/";

/// The default depth limit for [`levels_within`]: the broker's `max_topic_levels`.
pub const DEFAULT_MAX_LEVELS: usize = 128;

/// Whether a topic name or filter has at most `max_levels` levels (`a/b` has two, `/` has two).
/// A shared subscription is measured without its `$share/{group}/` prefix. The protocol sets no
/// limit; a server sets one so no per-level walk or allocation is shaped by a client.
pub fn levels_within(topic_or_filter: &str, max_levels: usize) -> bool {
    let levels = parse_shared(topic_or_filter).map_or(topic_or_filter, |(_, inner)| inner);
    // A fold without early exit compiles to a vectorised count.
    let separators = levels.bytes().fold(0usize, |n, b| n + usize::from(b == b'/'));
    separators < max_levels
}

/// A topic name a PUBLISH may carry: non-empty, at most 65,535 bytes, no `+`, `#` or U+0000.
pub fn valid_topic_name(name: &str) -> bool {
    // A fold without early exit compiles to a vectorised scan.
    let wildcard_or_nul = name.bytes().fold(false, |found, b| found | (b == b'+') | (b == b'#') | (b == 0));
    !name.is_empty() && name.len() <= MAX_LEN && !wildcard_or_nul
}

/// A topic filter a SUBSCRIBE may carry: non-empty, at most 65,535 bytes, no U+0000, `+` only as
/// a whole level, `#` only as the whole last level. `$share/{group}/{filter}` is accepted when the
/// group is non-empty without `+`, `#` or `/` and the filter is itself valid.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.len() > MAX_LEN {
        return false;
    }
    match parse_shared(filter) {
        Some((_, inner)) => valid_plain_filter(inner),
        None => !filter.starts_with(SHARE_PREFIX) && valid_plain_filter(filter),
    }
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" => return levels.peek().is_none(),
            "+" => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// Splits a shared subscription `$share/{group}/{filter}` into `(group, filter)`. `None` when
/// `filter` does not start with `$share/`, or the group is empty or holds a wildcard, or nothing
/// follows the group. The inner filter's own syntax is checked by [`valid_topic_filter`].
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let (group, inner) = filter.strip_prefix(SHARE_PREFIX)?.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return None;
    }
    Some((group, inner))
}

/// Whether the topic name `topic` matches the (valid, non-shared) topic filter `filter`.
///
/// `+` matches exactly one level (possibly empty), `#` any number of levels including the parent
/// itself (`a/#` matches `a`). Topics starting with `$` never match a filter starting with a
/// wildcard ([MQTT-4.7.2-1]). Strip a `$share/{group}/` prefix with [`parse_shared`] first.
pub fn matches(filter: &str, topic: &str) -> bool {
    let (mut filter, mut topic) = (filter.as_bytes(), topic.as_bytes());
    if topic.first() == Some(&b'$') && matches!(filter.first(), Some(b'+' | b'#')) {
        return false;
    }
    loop {
        if filter == b"#" {
            return true;
        }
        let filter_end = level_end(filter);
        let topic_end = level_end(topic);
        let level = &filter[..filter_end];
        if level != b"+" && level != &topic[..topic_end] {
            return false;
        }
        match (filter_end == filter.len(), topic_end == topic.len()) {
            (true, true) => return true,
            (true, false) => return false,
            // The topic has no more levels: only a final `/#` (the parent rule) still matches.
            (false, true) => return &filter[filter_end..] == b"/#",
            (false, false) => {
                filter = &filter[filter_end + 1..];
                topic = &topic[topic_end + 1..];
            }
        }
    }
}

/// Index of the first `/` in `s`, or its length.
fn level_end(s: &[u8]) -> usize {
    s.iter().position(|&b| b == b'/').unwrap_or(s.len())
}
