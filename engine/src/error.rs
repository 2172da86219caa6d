//! The engine error type.

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topology is not well formed (unknown parent, duplicate name, mismatched types, ...).
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
    /// A processor was wired to a store it cannot use.
    #[error("processor '{processor}' cannot use store '{store}': {reason}")]
    StoreAccess {
        /// The processor.
        processor: String,
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
    /// A record key or value did not deserialize at a source.
    #[error("source '{node}': cannot deserialize the {what} of {topic}-{partition}@{offset}: {reason}")]
    Deserialization {
        /// Source node.
        node: String,
        /// "key" or "value".
        what: &'static str,
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// The serde's message.
        reason: String,
    },
    /// A record key or value did not serialize at a sink.
    #[error("sink '{node}': cannot serialize the {what} for topic {topic}: {reason}")]
    Serialization {
        /// Sink node.
        node: String,
        /// "key" or "value".
        what: &'static str,
        /// Destination topic.
        topic: String,
        /// The serde's message.
        reason: String,
    },
    /// A processor failed.
    #[error("processor '{node}' failed: {reason}")]
    Processing {
        /// The processor.
        node: String,
        /// What it said.
        reason: String,
    },
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A Kafka operation failed.
    #[error("kafka: {op}: {reason}")]
    Kafka {
        /// What was being done.
        op: String,
        /// What the client or broker said.
        reason: String,
    },
    /// The application was closed while this work ran (a restore, say): it stopped part way,
    /// with nothing lost or committed half done.
    #[error("the application is shutting down")]
    ShuttingDown,
    /// A state store failed.
    #[error(transparent)]
    Store(#[from] moldau_state_store::Error),
}

impl Error {
    /// A processing error raised by user code in processor `node`.
    pub fn processing(node: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Processing { node: node.into(), reason: reason.to_string() }
    }
}

impl Error {
    /// A Kafka error while doing `op`.
    pub(crate) fn kafka(op: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Kafka { op: op.into(), reason: reason.to_string() }
    }
}

/// Result with the engine [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
