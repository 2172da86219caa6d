//! The SQL crate's one error type: what went wrong, and where in the statement text.

use std::fmt;

/// A position in the statement text (1-based, as editors count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Errors of the SQL front end.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text does not parse: what was expected, the offending token and where.
    #[error("syntax error at {at}: {message}")]
    Parse {
        /// What is wrong (names the offending token).
        message: String,
        /// Where.
        at: Position,
    },
    /// The statement parses but means something wrong: an unknown column or stream, a type
    /// mismatch, an unsupported combination.
    #[error("{0}")]
    Semantic(String),
    /// SQL the engine does not run yet; names the construct.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Running the statement failed: the cluster or the engine said why.
    #[error("{0}")]
    Execution(String),
}

/// Results of the SQL front end.
pub type Result<T> = std::result::Result<T, SqlError>;

impl SqlError {
    /// A parse error at `at`.
    pub(crate) fn parse(message: impl Into<String>, at: Position) -> Self {
        SqlError::Parse { message: message.into(), at }
    }

    /// The error of a statement that starts at `start` of a longer text, its position made
    /// relative to that text.
    pub(crate) fn within(self, start: Position) -> Self {
        match self {
            SqlError::Parse { message, at } => {
                let column = if at.line == 1 { at.column + start.column - 1 } else { at.column };
                SqlError::Parse { message, at: Position { line: at.line + start.line - 1, column } }
            }
            other => other,
        }
    }

    /// Where the error is in the text, if it is a parse error.
    pub fn position(&self) -> Option<Position> {
        match self {
            SqlError::Parse { at, .. } => Some(*at),
            _ => None,
        }
    }
}
