//! Instants as clients write them in `from=`/`until=` (and the JSON bodies of the multi-queries):
//! epoch milliseconds (`1733356800000`) or an ISO-8601 / RFC 3339 date-time
//! (`2026-12-05T08:00:00Z`, `2026-12-05T09:00:00.250+01:00`, `2026-12-05` for UTC midnight; a
//! date-time without offset is UTC). Parsed by hand: fixed-width fields, no allocation.

use serde::Deserialize;

/// An instant in a JSON body: a number of epoch ms or a string as in a query parameter.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Instant {
    Millis(i64),
    Text(String),
}

impl Instant {
    /// Epoch milliseconds, or why not.
    pub fn millis(&self) -> Result<i64, String> {
        match self {
            Instant::Millis(ms) => Ok(*ms),
            Instant::Text(s) => parse(s),
        }
    }
}

/// Parses epoch milliseconds or an ISO-8601 date-time into epoch milliseconds.
pub fn parse(raw: &str) -> Result<i64, String> {
    let s = raw.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{raw:?}: epoch milliseconds out of range"));
    }
    iso8601(s).ok_or_else(|| format!("{raw:?} is neither epoch milliseconds nor an ISO-8601 date-time"))
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]][Z|±HH[:]MM]]`.
fn iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = num(17, 2)?;
        i = 19;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += (hour * 3600 + minute * 60 + second.min(59)) * 1000;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits, padded; finer digits are truncated.
        let frac = &b[start..i.min(start + 3)];
        let mut millis = frac.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        for _ in frac.len()..3 {
            millis *= 10;
        }
        ms += millis;
    }
    let offset_minutes = match &b[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => ([*h1, *h2], [*m1, *m2]),
                [h1, h2] => ([*h1, *h2], [b'0', b'0']),
                _ => return None,
            };
            let two = |p: [u8; 2]| {
                p.iter().all(u8::is_ascii_digit).then(|| i64::from(p[0] - b'0') * 10 + i64::from(p[1] - b'0'))
            };
            let (h, m) = (two(h)?, two(m)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
        }
        _ => return None,
    };
    Some(ms - offset_minutes * 60_000)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, March-based years).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_epoch_ms_and_iso8601() {
        let cases = [
            ("0", Some(0)),
            ("1733356800000", Some(1_733_356_800_000)),
            ("-1000", Some(-1000)),
            ("1970-01-01", Some(0)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-12-05T00:00:00Z", Some(1_733_356_800_000)),
            ("2024-12-05T00:00Z", Some(1_733_356_800_000)),
            ("2024-12-05 00:00:00", Some(1_733_356_800_000)),
            ("2024-12-05T01:00:00+01:00", Some(1_733_356_800_000)),
            ("2024-12-04T19:00:00-0500", Some(1_733_356_800_000)),
            ("2024-12-05T00:00:00.25Z", Some(1_733_356_800_250)),
            ("2024-12-05T00:00:00.123456Z", Some(1_733_356_800_123)),
            ("2000-02-29T12:00:00Z", Some(951_825_600_000)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("2024-12-05T24:00:00Z", None),
            ("2024-12-05T00:00:00.Z", None),
            ("2024-12-05T00:00:00+1", None),
            ("yesterday", None),
            ("", None),
            ("99999999999999999999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).ok(), expected, "{input}");
        }
    }
}
