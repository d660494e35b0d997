//! A message's `timestamp` (SPEC §4.1): epoch milliseconds or an ISO-8601 string, stored as
//! epoch milliseconds.
//!
//! - A number is epoch milliseconds. A fractional one (`1700000000000.7`) is accepted and
//!   rounded down to the millisecond, as a float sent by a scripting language often is.
//! - A string is RFC 3339 (`2026-12-05T06:30:00.250Z`, `...+01:00`) or another ISO-8601
//!   date-time the parser knows (basic format `20261205T063000Z`); without an offset it is taken
//!   as UTC, and a date alone (`2026-12-05`) as its midnight UTC. Sub-millisecond digits are
//!   rounded down.
//! - Accepted range: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z ([`MIN_TS`]..=[`MAX_TS`]).
//!   Earlier instants are refused (the stores key by unsigned-looking epoch ms, and a negative
//!   timestamp is almost always a sign error); later ones cannot be written as ISO-8601 years.
//!   Seconds sent where milliseconds are expected land in January 1970: that is accepted, as
//!   nothing tells it apart from a real instant.

use serde_json::Value;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// The earliest accepted timestamp: the epoch.
pub const MIN_TS: i64 = 0;
/// The latest accepted timestamp: 9999-12-31T23:59:59.999Z.
pub const MAX_TS: i64 = 253_402_300_799_999;

/// Longest timestamp string considered (the longest ISO-8601 date-time with nanoseconds and an
/// offset is about 35 characters).
const MAX_STRING: usize = 64;

/// Why a `timestamp` value was refused (the text follows `timestamp: ` in the error detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not a number or ISO-8601 string")]
    Type,
    #[error("{0:?} is not an ISO-8601 date-time")]
    Syntax(String),
    #[error("out of range (1970-01-01 to 9999-12-31)")]
    Range,
}

/// Reads a `timestamp` value as epoch milliseconds.
pub fn parse(value: &Value) -> Result<i64, TimestampError> {
    let ms = match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i
            } else if n.is_u64() {
                return Err(TimestampError::Range);
            } else {
                let f = n.as_f64().ok_or(TimestampError::Type)?.floor();
                if !(MIN_TS as f64..=MAX_TS as f64).contains(&f) {
                    return Err(TimestampError::Range);
                }
                f as i64
            }
        }
        Value::String(s) => parse_str(s)?,
        _ => return Err(TimestampError::Type),
    };
    if (MIN_TS..=MAX_TS).contains(&ms) { Ok(ms) } else { Err(TimestampError::Range) }
}

fn parse_str(s: &str) -> Result<i64, TimestampError> {
    let syntax = || TimestampError::Syntax(s.chars().take(MAX_STRING).collect());
    if s.len() > MAX_STRING {
        return Err(syntax());
    }
    let instant = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(PrimitiveDateTime::assume_utc))
        .or_else(|_| Date::parse(s, &Iso8601::DEFAULT).map(|d| d.midnight().assume_utc()))
        .map_err(|_| syntax())?;
    let ms = instant.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).map_err(|_| TimestampError::Range)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn values() {
        let range = Err(TimestampError::Range);
        for (input, expected) in [
            (json!(0), Ok(0)),
            (json!(1_764_916_200_000i64), Ok(1_764_916_200_000)),
            (json!(1_764_916_200_000.9), Ok(1_764_916_200_000)),
            (json!(0.5), Ok(0)),
            (json!(MAX_TS), Ok(MAX_TS)),
            (json!(MAX_TS + 1), range.clone()),
            (json!(-1), range.clone()),
            (json!(-0.5), range.clone()),
            (json!(u64::MAX), range.clone()),
            (json!(1e300), range.clone()),
            (json!("2026-12-05T06:30:00Z"), Ok(1_796_452_200_000)),
            (json!("2026-12-05T06:30:00.250Z"), Ok(1_796_452_200_250)),
            (json!("2026-12-05T06:30:00.2509999Z"), Ok(1_796_452_200_250)),
            (json!("2026-12-05T07:30:00+01:00"), Ok(1_796_452_200_000)),
            (json!("2026-12-05t06:30:00z"), Ok(1_796_452_200_000)),
            (json!("2026-12-05T06:30:00"), Ok(1_796_452_200_000)),
            (json!("20261205T063000Z"), Ok(1_796_452_200_000)),
            (json!("2026-12-05"), Ok(1_796_428_800_000)),
            (json!("1970-01-01T00:00:00Z"), Ok(0)),
            (json!("1969-12-31T23:59:59.999Z"), range.clone()),
            (json!("9999-12-31T23:59:59.999Z"), Ok(MAX_TS)),
            (json!("9999-12-31T23:59:59.999-01:00"), range.clone()),
            (json!("2026-13-05T06:30:00Z"), Err(TimestampError::Syntax("2026-13-05T06:30:00Z".into()))),
            (json!("yesterday"), Err(TimestampError::Syntax("yesterday".into()))),
            (json!(""), Err(TimestampError::Syntax(String::new()))),
            (json!("1764916200000"), Err(TimestampError::Syntax("1764916200000".into()))),
            (json!(null), Err(TimestampError::Type)),
            (json!(true), Err(TimestampError::Type)),
            (json!([1]), Err(TimestampError::Type)),
            (json!({"ms": 1}), Err(TimestampError::Type)),
        ] {
            assert_eq!(parse(&input), expected, "{input}");
        }
        let long = "2".repeat(1000);
        assert_eq!(parse(&json!(long)), Err(TimestampError::Syntax("2".repeat(MAX_STRING))));
    }

    proptest! {
        #[test]
        fn strings_never_panic(s in "\\PC{0,70}", iso in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?") {
            for input in [s, iso] {
                if let Ok(ms) = parse(&Value::String(input.clone())) {
                    prop_assert!((MIN_TS..=MAX_TS).contains(&ms), "{}", input);
                }
            }
        }

        #[test]
        fn numbers_in_range_are_kept(ms in MIN_TS..=MAX_TS, frac in 0.0f64..1.0) {
            prop_assert_eq!(parse(&json!(ms)), Ok(ms));
            // A fraction rounds down, where f64 can still tell the millisecond apart.
            if ms < (1i64 << 44) {
                prop_assert_eq!(parse(&json!(ms as f64 + frac * 0.9)), Ok(ms));
            }
        }
    }
}
