//! Errors from parsing rule files, with line and column.

use std::fmt;
use std::ops::Range;

/// A 1-based line and column (column counted in characters) in a rule file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `src` (clamped to the text).
    pub(crate) fn of(src: &str, offset: usize) -> Location {
        let bytes = src.as_bytes();
        let end = offset.min(bytes.len());
        let mut line = 1;
        let mut column = 1;
        for &b in &bytes[..end] {
            if b == b'\n' {
                line += 1;
                column = 1;
            } else if b & 0b1100_0000 != 0b1000_0000 {
                // count characters, not UTF-8 continuation bytes
                column += 1;
            }
        }
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

struct MaybeLocation<'a>(&'a Option<Location>);

impl fmt::Display for MaybeLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(loc) => loc.fmt(f),
            None => f.write_str("unknown position"),
        }
    }
}

/// A rule file (or override text) could not be used.
///
/// `Display` reads like `line 12, column 10: unknown signal "temprature" ...`.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not valid TOML, or a top-level key / type that the file format does not
    /// allow. The location comes from the TOML parser (it is always present in
    /// practice).
    #[error("{}: {message}", MaybeLocation(.location))]
    Toml {
        /// Where the parser stopped.
        location: Option<Location>,
        /// The parser's message.
        message: String,
    },
    /// Valid TOML, but a rule or override is wrong (unknown signal, bad
    /// window, negative hours, duplicate id, unknown kind, unknown rule in an
    /// override, ...). Points at the offending key or value.
    #[error("{location}: {message}")]
    Invalid {
        /// The offending key or value.
        location: Location,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl RulesError {
    pub(crate) fn toml(src: &str, e: &toml::de::Error) -> RulesError {
        RulesError::Toml {
            location: e.span().map(|s| Location::of(src, s.start)),
            message: e.message().trim().to_string(),
        }
    }

    pub(crate) fn invalid(
        src: &str,
        span: &Range<usize>,
        message: impl Into<String>,
    ) -> RulesError {
        RulesError::Invalid {
            location: Location::of(src, span.start),
            message: message.into(),
        }
    }

    /// The location of the problem, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            RulesError::Toml { location, .. } => *location,
            RulesError::Invalid { location, .. } => Some(*location),
        }
    }

    /// 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line)
    }

    /// 1-based column (in characters) of the problem, when known.
    pub fn column(&self) -> Option<usize> {
        self.location().map(|l| l.column)
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        match self {
            RulesError::Toml { message, .. } | RulesError::Invalid { message, .. } => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_chars() {
        let src = "ab\nçd = 1\n";
        assert_eq!(Location::of(src, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of(src, 3), Location { line: 2, column: 1 });
        // 'ç' is two bytes but one column
        assert_eq!(Location::of(src, 5), Location { line: 2, column: 2 });
        assert_eq!(Location::of(src, 999).line, 3);
    }
}
