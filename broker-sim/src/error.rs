//! The one error type of broker-sim.
//!
//! Kafka error codes (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, ...) are ordinary
//! response data and never appear here: this enum is for failures of the broker itself —
//! storage, configuration, start-up and broken invariants.

/// Result alias for broker-sim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong inside the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the broker was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data (a segment, checkpoint or metadata file) is unreadable.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A broker or topic configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A broken invariant: this is a bug in broker-sim.
    #[error("internal error (this is a bug in broker-sim): {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Error::Io { context, source }
    }

    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// Whether retrying the same operation may succeed (I/O errors only).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}
