//! Per-request options (SPEC §4.1): `store`, `forward` and `ttl`, read from an HTTP query
//! string, and the duration syntax `ttl` (and config values like `idempotency_window`) use.
//!
//! Durations are whole seconds: a bare number (`3600`), a number with one unit (`10s`, `15m`,
//! `12h`, `30d`, `2w`), or an ISO-8601 duration (`P1DT2H`, `PT15M`, `P2W`), where a year is 365
//! days and a month 30 days (a retention needs no calendar). Fractions and negative values are
//! refused. A `ttl` must be at least one second and at most [`MAX_TTL`] (100 years): anything
//! longer is a mistake, and the bound keeps `now + ttl` far from overflow.

use std::time::Duration;

use crate::error::IntakeError;

/// The longest `ttl` accepted: 100 years of 365 days, the longest retention.
pub const MAX_TTL: Duration = switchyard_identity::MAX_RETENTION;

/// What to do with the messages of one request. MQTT publishes use the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Store in the message cache and the time-series store (`store=false`: forward only).
    pub store: bool,
    /// Forward to the rule-engine sinks (`forward=false`: store only).
    pub forward: bool,
    /// Retention of these messages and their points, counted from the receive time.
    pub ttl: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self { store: true, forward: true, ttl: None }
    }
}

impl Options {
    /// Reads `store`, `forward` and `ttl` from a raw query string (`store=false&ttl=30d`, with
    /// or without the leading `?`). Other parameters are left to the caller and ignored here;
    /// a repeated parameter takes its last value. Values are plain tokens (no percent-decoding
    /// is needed for any valid value, so an encoded one is simply invalid).
    pub fn from_query(query: &str) -> Result<Options, IntakeError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let pairs = query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")));
        Self::from_pairs(pairs)
    }

    /// Reads the options from already split `(name, value)` pairs (as a web framework's query
    /// extractor gives them).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Options, IntakeError> {
        let mut options = Options::default();
        let mut details = Vec::new();
        for (name, value) in pairs {
            match name {
                "store" => match parse_bool(value) {
                    Some(b) => options.store = b,
                    None => details.push(format!("store: {:?} is not true or false", clip(value))),
                },
                "forward" => match parse_bool(value) {
                    Some(b) => options.forward = b,
                    None => details.push(format!("forward: {:?} is not true or false", clip(value))),
                },
                "ttl" => match parse_ttl(value) {
                    Ok(ttl) => options.ttl = Some(ttl),
                    Err(e) => details.push(format!("ttl: {e}")),
                },
                _ => {}
            }
        }
        if details.is_empty() { Ok(options) } else { Err(IntakeError::invalid("invalid options", details)) }
    }

    /// When messages received at `now_ms` expire, if a `ttl` was given. The ttl counts from the
    /// receive time, not from the message's `timestamp`, so backfilled data is not expired on
    /// arrival.
    pub fn expires_at(&self, now_ms: i64) -> Option<i64> {
        self.ttl.map(|ttl| now_ms.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64))
    }
}

/// At most 64 characters of client input, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration (seconds, 10s/15m/12h/30d/2w, or ISO-8601 like P1DT2H)")]
    Syntax(String),
    #[error("{0:?} is too long")]
    TooLong(String),
    #[error("must be at least one second")]
    Zero,
}

/// Parses a duration in whole seconds (see the module documentation for the syntax).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(clip(s));
    let too_long = || DurationError::TooLong(clip(s));
    // Longer input cannot be a sensible duration; refusing it early bounds the work.
    if s.is_empty() || s.len() > 64 {
        return Err(syntax());
    }
    let secs = if let Some(rest) = s.strip_prefix('P') {
        parse_iso(rest).ok_or_else(syntax)?
    } else {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n = parse_digits(digits).ok_or_else(syntax)?;
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(syntax()),
        };
        n.checked_mul(scale)
    };
    let secs = secs.ok_or_else(too_long)?;
    Ok(Duration::from_secs(secs))
}

/// Parses the part of an ISO-8601 duration after `P`. `None` on a syntax error, `Some(None)`
/// on overflow.
fn parse_iso(rest: &str) -> Option<Option<u64>> {
    if rest.is_empty() || rest == "T" {
        return None;
    }
    let mut total: Option<u64> = Some(0);
    let mut in_time = false;
    let mut digits_start = 0;
    // Units must come in this order; the index of the last one seen refuses repeats.
    const DATE_UNITS: [(u8, u64); 4] = [(b'Y', 365 * 86_400), (b'M', 30 * 86_400), (b'W', 7 * 86_400), (b'D', 86_400)];
    const TIME_UNITS: [(u8, u64); 3] = [(b'H', 3_600), (b'M', 60), (b'S', 1)];
    let mut next_unit = 0;
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            continue;
        }
        if b == b'T' {
            if in_time || i != digits_start {
                return None;
            }
            in_time = true;
            next_unit = 0;
            digits_start = i + 1;
            continue;
        }
        let units: &[(u8, u64)] = if in_time { &TIME_UNITS } else { &DATE_UNITS };
        let pos = units[next_unit..].iter().position(|(u, _)| *u == b)? + next_unit;
        let n = parse_digits(&rest[digits_start..i])?;
        total = total.and_then(|t| n.checked_mul(units[pos].1).and_then(|x| t.checked_add(x)));
        next_unit = pos + 1;
        digits_start = i + 1;
    }
    // Trailing digits without a unit, or a `T` with nothing after it.
    if digits_start != bytes.len() || rest.ends_with('T') {
        return None;
    }
    Some(total)
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a `ttl`: a duration of one second to [`MAX_TTL`].
pub fn parse_ttl(s: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    if d > MAX_TTL {
        return Err(DurationError::TooLong(clip(s)));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, secs) in [
            ("3600", Some(3600)),
            ("0", Some(0)),
            ("10s", Some(10)),
            ("15m", Some(900)),
            ("12h", Some(43_200)),
            ("30d", Some(2_592_000)),
            ("2w", Some(1_209_600)),
            ("P1DT2H", Some(93_600)),
            ("PT15M", Some(900)),
            ("PT10S", Some(10)),
            ("P2W", Some(1_209_600)),
            ("P1Y", Some(31_536_000)),
            ("P1M", Some(2_592_000)),
            ("P1Y2M3DT4H5M6S", Some(31_536_000 + 5_184_000 + 259_200 + 14_400 + 300 + 6)),
            ("PT36H", Some(129_600)),
            ("", None),
            ("s", None),
            ("-5", None),
            ("+5", None),
            ("1.5h", None),
            ("10x", None),
            ("10 s", None),
            ("10S", None),
            ("1h30m", None),
            ("P", None),
            ("PT", None),
            ("P1", None),
            ("P1DT", None),
            ("PT1D", None),
            ("P1H", None),
            ("P1D1Y", None),
            ("P1D1D", None),
            ("PT1M1H", None),
            ("P1DTT1H", None),
            ("PD", None),
            ("PT1.5S", None),
            ("p1d", None),
        ] {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_secs()), secs, "{input:?}");
        }
        assert!(matches!(parse_duration("99999999999999999999"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_duration("9999999999999999w"), Err(DurationError::TooLong(_))));
        assert!(matches!(parse_duration("P9999999999999999Y"), Err(DurationError::TooLong(_))));
        assert_eq!(parse_duration(&"1".repeat(1000)), Err(DurationError::Syntax("1".repeat(64))));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl("0"), Err(DurationError::Zero));
        assert_eq!(parse_ttl("PT0S"), Err(DurationError::Zero));
        assert_eq!(parse_ttl("1").unwrap().as_secs(), 1);
        assert_eq!(parse_ttl("P100Y").unwrap(), MAX_TTL);
        assert!(matches!(parse_ttl("P101Y"), Err(DurationError::TooLong(_))));
        assert!(matches!(parse_ttl("36501d"), Err(DurationError::TooLong(_))));
    }

    #[test]
    fn query_strings() {
        assert_eq!(Options::from_query("").unwrap(), Options::default());
        assert_eq!(Options::from_query("?").unwrap(), Options::default());
        let o = Options::from_query("?store=false&limit=5&ttl=30d").unwrap();
        assert_eq!(o, Options { store: false, forward: true, ttl: Some(Duration::from_secs(2_592_000)) });
        let o = Options::from_query("forward=0&store=1&ttl=P1DT2H&&x").unwrap();
        assert_eq!(o, Options { store: true, forward: false, ttl: Some(Duration::from_secs(93_600)) });
        assert!(Options::from_query("store=false&store=true").unwrap().store);
        let e = Options::from_query("store=no&ttl=forever&forward").unwrap_err();
        assert_eq!(e.error, "invalid options");
        assert_eq!(e.details.len(), 3, "{:?}", e.details);
        assert!(e.details[0].starts_with("store: "));
        assert!(e.details[1].starts_with("ttl: "));
        assert!(e.details[2].starts_with("forward: "));
        assert_eq!(e.http_status(), 400);
        assert!(Options::from_query("ttl=0").is_err());
    }

    #[test]
    fn expiry_counts_from_receive_time() {
        let o = Options { ttl: Some(Duration::from_secs(10)), ..Options::default() };
        assert_eq!(o.expires_at(1_000), Some(11_000));
        assert_eq!(Options::default().expires_at(1_000), None);
    }
}
