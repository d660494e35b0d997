//! Instants as clients write them in `from=`/`until=` (and the JSON bodies of the multi-queries):
//! epoch milliseconds (`1733356800000`) or an ISO-8601 date-time (`2026-12-05T08:00:00Z`,
//! `2026-12-05T09:00:00.250%2B01:00` with the `+` escaped in a URL, `2026-12-05` for UTC
//! midnight). Read exactly as a message's `timestamp` is (`switchyard_pipeline::timestamp`), so
//! the same instants are accepted on the way in and on the way out.

use serde::Deserialize;
use switchyard_pipeline::timestamp;

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
            Instant::Millis(ms) => timestamp::parse(&(*ms).into()).map_err(|e| format!("{ms}: {e}")),
            Instant::Text(s) => parse(s),
        }
    }
}

/// Parses epoch milliseconds (digits) or an ISO-8601 date-time into epoch milliseconds.
pub fn parse(raw: &str) -> Result<i64, String> {
    let value = match raw.parse::<i64>() {
        Ok(ms) => ms.into(),
        Err(_) => serde_json::Value::String(raw.to_owned()),
    };
    timestamp::parse(&value).map_err(|e| format!("{raw:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_epoch_ms_and_iso8601() {
        let cases = [
            ("0", Some(0)),
            ("1733356800000", Some(1_733_356_800_000)),
            ("2024-12-05", Some(1_733_356_800_000)),
            ("2024-12-05T00:00:00Z", Some(1_733_356_800_000)),
            ("2024-12-05T01:00:00+01:00", Some(1_733_356_800_000)),
            ("2024-12-05T00:00:00.25Z", Some(1_733_356_800_250)),
            ("-1000", None),
            ("2023-02-29", None),
            ("yesterday", None),
            ("", None),
            ("99999999999999999999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).ok(), expected, "{input}");
        }
    }
}
