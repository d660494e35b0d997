//! Topic names and topic filters (section 4.7): validity, shared subscriptions
//! (`$share/{group}/{filter}`) and wildcard matching. No allocation anywhere.

const MAX_LEN: usize = 65_535;
const SHARE_PREFIX: &str = "$share/";

/// A topic name a PUBLISH may carry: non-empty, at most 65,535 bytes, no `+`, `#` or U+0000.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LEN && !name.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
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
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
