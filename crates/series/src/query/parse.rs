//! Parsing the query parameters of SPEC §5: `aggregates=` names, `grouping=` and `order=`.

use std::str::FromStr;

use super::{Aggregate, Grouping, Order, QueryError};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// The widest fixed bucket accepted: 36,500 days (about a century).
pub const MAX_BUCKET_MS: i64 = 36_500 * DAY;

fn invalid(what: String) -> QueryError {
    QueryError::Invalid(what)
}

impl FromStr for Aggregate {
    type Err = QueryError;

    /// `min`, `max`, `mean`, `median`, `sum`, `count`, `first`, `last`, `std` or
    /// `percentile(N)` with 0 ≤ N ≤ 100 (fractions allowed: `percentile(99.9)`).
    fn from_str(s: &str) -> Result<Aggregate, QueryError> {
        Ok(match s.trim() {
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "mean" => Aggregate::Mean,
            "median" => Aggregate::Median,
            "sum" => Aggregate::Sum,
            "count" => Aggregate::Count,
            "first" => Aggregate::First,
            "last" => Aggregate::Last,
            "std" => Aggregate::Std,
            other => {
                let n = other
                    .strip_prefix("percentile(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(|| invalid(format!("unknown aggregate {other:?}")))?;
                let n: f64 = n.trim().parse().map_err(|_| invalid(format!("percentile needs a number, not {n:?}")))?;
                if !(0.0..=100.0).contains(&n) {
                    return Err(invalid(format!("percentile {n} is outside 0–100")));
                }
                Aggregate::Percentile(n)
            }
        })
    }
}

impl FromStr for Grouping {
    type Err = QueryError;

    /// `none`, `auto`, or `N` followed by `s`, `m`, `h`, `d` or `w` (N ≥ 1, at most
    /// [`MAX_BUCKET_MS`]).
    fn from_str(s: &str) -> Result<Grouping, QueryError> {
        let s = s.trim();
        match s {
            "none" => return Ok(Grouping::None),
            "auto" => return Ok(Grouping::Auto),
            _ => {}
        }
        let bad = || invalid(format!("grouping {s:?} is not none, auto or N followed by s, m, h, d or w"));
        let unit = match s.chars().last().ok_or_else(bad)? {
            's' => SECOND,
            'm' => MINUTE,
            'h' => HOUR,
            'd' => DAY,
            'w' => WEEK,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = digits.parse().unwrap_or(i64::MAX);
        let ms = n.checked_mul(unit).filter(|ms| *ms <= MAX_BUCKET_MS);
        match ms {
            Some(ms) if n >= 1 => Ok(Grouping::Every { ms }),
            Some(_) => Err(invalid(format!("grouping {s:?} must be at least 1"))),
            None => Err(invalid(format!("grouping {s:?} is wider than 36500d"))),
        }
    }
}

impl FromStr for Order {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Order, QueryError> {
        match s.trim() {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            other => Err(invalid(format!("order {other:?} is not asc or desc"))),
        }
    }
}

/// The `auto` ladder of bucket widths.
const LADDER: [i64; 13] = [
    SECOND,
    5 * SECOND,
    10 * SECOND,
    30 * SECOND,
    MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    30 * MINUTE,
    HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    WEEK,
];

/// At most this many buckets under `auto`.
pub const AUTO_BUCKETS: i128 = 500;

/// The `auto` width for `[from, until)`: the first of 1s, 5s, 10s, 30s, 1m, 5m, 10m, 30m, 1h, 6h,
/// 12h, 1d, 1w that cuts the range into at most 500 bucket widths; past 500 weeks, the smallest
/// whole number of weeks that does.
pub fn auto_width(from: i64, until: i64) -> i64 {
    let span = (i128::from(until) - i128::from(from)).max(1);
    LADDER.iter().copied().find(|w| ceil_div(span, i128::from(*w)) <= AUTO_BUCKETS).unwrap_or_else(|| {
        let weeks = ceil_div(span, AUTO_BUCKETS * i128::from(WEEK));
        i64::try_from(weeks * i128::from(WEEK)).unwrap_or(i64::MAX)
    })
}

/// `a / b` rounded up, for positive `a` and `b`.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_from_the_ladder() {
        assert_eq!(auto_width(0, 1), SECOND);
        assert_eq!(auto_width(0, 500 * SECOND), SECOND);
        assert_eq!(auto_width(0, 500 * SECOND + 1), 5 * SECOND);
        assert_eq!(auto_width(0, HOUR), 10 * SECOND);
        assert_eq!(auto_width(0, DAY), 5 * MINUTE);
        assert_eq!(auto_width(0, 7 * DAY), 30 * MINUTE);
        assert_eq!(auto_width(0, 365 * DAY), DAY);
        assert_eq!(auto_width(0, 500 * WEEK), WEEK);
        assert_eq!(auto_width(0, 1000 * WEEK), 2 * WEEK);
        assert_eq!(auto_width(i64::MIN, i64::MAX) % WEEK, 0);
        assert_eq!(auto_width(10, 5), SECOND);
    }
}
