//! Why input was refused: one error type for every protocol. HTTP answers it as
//! `{"error": ..., "details": [...]}` with the status of its [`ErrorKind`]; MQTT 5.0 answers
//! PUBACK/PUBREC `0x99` with [`IntakeError::reason_string`]; MQTT 3.1.1 drops and logs it.

use std::fmt;

/// The class of a refusal, which picks the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid input or options: HTTP 400, MQTT `0x99`.
    Invalid,
    /// More than a limit allows (messages per request, metrics per message): HTTP 413,
    /// MQTT `0x99`.
    TooLarge,
    /// The tenant's forwarding outbox is full (`max_outbox_bytes`): HTTP 503, MQTT `0x97`
    /// (quota exceeded). Nothing was taken; the client tries again later.
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unavailable => 503,
        }
    }
}

/// A refusal with a summary (`error`) and one line per problem (`details`), each naming the
/// field it is about: `timestamp: ...` for a single object, `[2].timestamp: ...` for the
/// third message of an array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IntakeError {
    pub kind: ErrorKind,
    pub error: String,
    pub details: Vec<String>,
}

/// At most this many details are reported; the rest are summarized in one more line.
pub const MAX_DETAILS: usize = 20;

impl IntakeError {
    /// An invalid-input error with details.
    pub fn invalid(error: impl Into<String>, details: Vec<String>) -> Self {
        Self { kind: ErrorKind::Invalid, error: error.into(), details }
    }

    /// A too-large error with details.
    pub fn too_large(error: impl Into<String>, details: Vec<String>) -> Self {
        Self { kind: ErrorKind::TooLarge, error: error.into(), details }
    }

    /// The HTTP status code (400 or 413).
    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }

    /// The HTTP body: `{"error": ..., "details": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.error, "details": self.details })
    }

    /// One line for an MQTT 5.0 reason string or a log line: the error and its first detail.
    pub fn reason_string(&self) -> String {
        match self.details.first() {
            Some(first) if self.details.len() > 1 => {
                format!("{}: {} (and {} more)", self.error, first, self.details.len() - 1)
            }
            Some(first) => format!("{}: {}", self.error, first),
            None => self.error.clone(),
        }
    }
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason_string())
    }
}

/// Collects details, up to [`MAX_DETAILS`], with a count of the ones left out.
#[derive(Debug, Default)]
pub(crate) struct Details {
    lines: Vec<String>,
    left_out: usize,
    too_large: bool,
}

impl Details {
    pub(crate) fn push(&mut self, line: String, too_large: bool) {
        self.too_large |= too_large;
        if self.lines.len() < MAX_DETAILS {
            self.lines.push(line);
        } else {
            self.left_out += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub(crate) fn into_error(mut self, error: &str) -> IntakeError {
        if self.left_out > 0 {
            self.lines.push(format!("... and {} more", self.left_out));
        }
        let kind = if self.too_large { ErrorKind::TooLarge } else { ErrorKind::Invalid };
        IntakeError { kind, error: error.to_owned(), details: self.lines }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_and_json() {
        let e = IntakeError::invalid("invalid message", vec!["a: x".into(), "b: y".into()]);
        assert_eq!(e.reason_string(), "invalid message: a: x (and 1 more)");
        assert_eq!(e.http_status(), 400);
        assert_eq!(e.to_json(), serde_json::json!({"error": "invalid message", "details": ["a: x", "b: y"]}));
        let e = IntakeError::too_large("too many", vec![]);
        assert_eq!(e.to_string(), "too many");
        assert_eq!(e.http_status(), 413);
    }

    #[test]
    fn details_are_bounded() {
        let mut d = Details::default();
        for i in 0..MAX_DETAILS + 5 {
            d.push(format!("[{i}]: bad"), false);
        }
        let e = d.into_error("invalid message");
        assert_eq!(e.details.len(), MAX_DETAILS + 1);
        assert_eq!(e.details.last().unwrap(), "... and 5 more");
        assert_eq!(e.kind, ErrorKind::Invalid);
    }
}
