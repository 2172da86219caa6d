//! The DSL's error type: the mistakes a topology description can hold, found when it is built.

/// A mistake in what was described with the DSL, returned by
/// [`StreamsBuilder::build`](crate::StreamsBuilder::build) (the first one met).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Window parameters out of range (a size, gap or time difference that is not positive,
    /// a negative grace period, an advance larger than the size).
    #[error("{kind} windows {reason}: {windows}")]
    InvalidWindows {
        /// "time", "session" or "sliding".
        kind: &'static str,
        /// What the parameters must satisfy.
        reason: &'static str,
        /// The parameters given.
        windows: String,
    },
    /// An operation needs a table that has a store (a source table or an aggregation), and
    /// was given one that has none (a `filter` or `map_values` of a table, say).
    #[error("{operation} needs a materialized table (a source table or an aggregation)")]
    UnmaterializedTable {
        /// The operation, e.g. "a stream-table join".
        operation: &'static str,
    },
    /// An operation needs the serdes of the table it is applied to, and that table does not
    /// know them (it came from `map_values`: call `with_serdes` on it first).
    #[error("{operation} after {node} needs the table's serdes: call with_serdes(keys, values) first")]
    MissingSerdes {
        /// The operation, e.g. "suppress".
        operation: &'static str,
        /// The node whose table lacks serdes.
        node: String,
    },
    /// Suppression settings that contradict each other or what they are applied to.
    #[error("suppress {reason}")]
    InvalidSuppression {
        /// What is wrong.
        reason: String,
    },
    /// The engine refused the topology the DSL made of the description (a name used twice,
    /// a topic read by two sources, ...).
    #[error(transparent)]
    Topology(#[from] moldau_engine::Error),
}

impl From<Error> for moldau_engine::Error {
    /// A DSL mistake as the engine's [`InvalidTopology`](moldau_engine::Error::InvalidTopology),
    /// for code that builds and runs in one `Result`.
    fn from(e: Error) -> Self {
        match e {
            Error::Topology(e) => e,
            other => moldau_engine::Error::InvalidTopology(other.to_string()),
        }
    }
}

/// Result with the DSL [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
