//! [`Escaped`]: how client-supplied text (client ids, usernames, topics, reason strings) reaches
//! the logs, so a client cannot forge log lines or drive a terminal with control characters.

use std::fmt::{self, Display, Write};

/// Displays the wrapped value with control characters (and bidirectional-text overrides)
/// escaped as `\n`, `\u{1b}`…; everything else, and a backslash, as is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

/// Writes through to the formatter, escaping as it goes.
struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(must_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let check = |input: &str, expected: &str| assert_eq!(Escaped(input).to_string(), expected, "{input:?}");
        check("sensor-1/température", "sensor-1/température");
        check("a\nfake line", "a\\nfake line");
        check("\u{1b}[31mred\r\t\0", "\\u{1b}[31mred\\r\\t\\u{0}");
        check("\u{7f}\u{85}\u{202e}txt", "\\u{7f}\\u{85}\\u{202e}txt");
        check("", "");
        assert_eq!(Escaped(format_args!("{}/{}", "ok", "x\ny")).to_string(), "ok/x\\ny");
    }
}
