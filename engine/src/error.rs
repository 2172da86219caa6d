//! The engine error type, and how the runtime recovers from each kind (Kafka Streams'
//! exception taxonomy): a transient Kafka failure or a migrated task rolls back to the last
//! commit and goes on, a fenced producer is replaced, a corrupted task's stores are wiped and
//! restored from their changelogs, and anything else stops the thread with its cause.

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::processor::TaskId;

/// The underlying error an [`Error`] keeps (a client's, a store's, or a message).
pub type Source = Box<dyn std::error::Error + Send + Sync>;

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
    #[error("source '{node}': cannot deserialize the {what} of {topic}-{partition}@{offset}: {source}")]
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
        /// The serde's error.
        source: moldau_state_store::SerdeError,
    },
    /// A record key or value did not serialize at a sink.
    #[error("sink '{node}': cannot serialize the {what} for topic {topic}: {source}")]
    Serialization {
        /// Sink node.
        node: String,
        /// "key" or "value".
        what: &'static str,
        /// Destination topic.
        topic: String,
        /// The serde's error.
        source: moldau_state_store::SerdeError,
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
    /// A Kafka operation failed (the cluster unreachable, a request timed out, a transaction
    /// the broker aborted): the thread rolls back to its last commit and goes on once the
    /// cluster answers.
    #[error("kafka: {op}: {source}")]
    Kafka {
        /// What was being done.
        op: String,
        /// What the client or broker said.
        source: Source,
    },
    /// The thread's tasks moved to another member (its assignment was lost, or the group's
    /// generation changed under a commit; Kafka Streams' `TaskMigratedException`). Nothing is
    /// lost: what was not committed is rolled back, and whoever owns the tasks next resumes
    /// from the last commit.
    #[error("task migrated: {op}: {source}")]
    TaskMigrated {
        /// What was being done.
        op: String,
        /// What said so.
        source: Source,
    },
    /// The producer was fenced (another instance took its transactional id) or failed for
    /// good: the thread rolls back, and a new producer replaces it (Kafka Streams'
    /// `ProducerFencedException`).
    #[error("producer fenced or broken: {op}: {source}")]
    ProducerFenced {
        /// What was being done.
        op: String,
        /// What the client said.
        source: Source,
    },
    /// A task's state cannot be trusted (a store found corrupted): its stores are wiped and
    /// restored from their changelogs, and the thread rolls back to its last commit (Kafka
    /// Streams' `TaskCorruptedException`).
    #[error("task {task} corrupted: {source}")]
    TaskCorrupted {
        /// The task.
        task: TaskId,
        /// What the store said.
        source: Box<moldau_state_store::Error>,
    },
    /// A stream thread stopped on this error ([`KafkaStreams::close`](crate::KafkaStreams::close)
    /// returns the first one).
    #[error("a stream thread stopped: {0}")]
    ThreadStopped(#[source] Arc<Error>),
    /// Closing the application outlasted its timeout: the threads still running were left.
    #[error("{threads} stream thread(s) still running after {timeout:?}")]
    CloseTimeout {
        /// How many threads were still running.
        threads: usize,
        /// The close timeout.
        timeout: std::time::Duration,
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

/// How the runtime recovers from an error (see [`Error::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Roll back to the last commit and go on (the tasks reopen from their stores and the
    /// consumer rewinds to the committed offsets).
    RollBack,
    /// Roll back with a new producer.
    NewProducer,
    /// Wipe the task's stores, restore them from their changelogs, and roll back.
    RestoreTask(TaskId),
    /// Stop the thread with the error.
    Stop,
}

impl Error {
    /// A Kafka error while doing `op`, taken as transient (see [`Error::from_kafka`] for one
    /// that may say the producer is fenced or the tasks migrated).
    pub(crate) fn kafka(op: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Kafka { op: op.into(), source: source.into() }
    }

    /// A client's error while doing `op`, by what it means for the thread: a fenced or
    /// fatally failed producer, a membership the group no longer has, or a transient failure.
    pub(crate) fn from_kafka(op: impl Into<String>, e: KafkaError) -> Self {
        let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        Self::from_code(op, e.rdkafka_error_code(), fatal, e)
    }

    /// An error with librdkafka's `code` (see [`Error::from_kafka`]); `fatal` when the client
    /// said it can no longer be used.
    pub(crate) fn from_code(
        op: impl Into<String>,
        code: Option<RDKafkaErrorCode>,
        fatal: bool,
        source: impl Into<Source>,
    ) -> Self {
        let (op, source) = (op.into(), source.into());
        match code {
            _ if fatal => Error::ProducerFenced { op, source },
            Some(
                RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fatal,
            ) => Error::ProducerFenced { op, source },
            Some(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId,
            ) => Error::TaskMigrated { op, source },
            _ => Error::Kafka { op, source },
        }
    }

    /// A store error met by task `task`: one that says the store must be rebuilt makes the
    /// task corrupted ([`Error::TaskCorrupted`]), any other stays a store error.
    pub(crate) fn of_task_store(task: TaskId, e: moldau_state_store::Error) -> Self {
        if e.requires_restore() {
            Error::TaskCorrupted { task, source: Box::new(e) }
        } else {
            Error::Store(e)
        }
    }

    /// How the runtime recovers from this error.
    pub fn recovery(&self) -> Recovery {
        match self {
            Error::Kafka { .. } | Error::TaskMigrated { .. } => Recovery::RollBack,
            Error::ProducerFenced { .. } => Recovery::NewProducer,
            Error::TaskCorrupted { task, .. } => Recovery::RestoreTask(*task),
            _ => Recovery::Stop,
        }
    }

    /// Whether the error stops the application (as opposed to one the runtime recovers
    /// from, or a close that interrupted the work).
    pub fn is_fatal(&self) -> bool {
        self.recovery() == Recovery::Stop && !matches!(self, Error::ShuttingDown)
    }
}

/// Result with the engine [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_tell_recoveries_apart_by_what_the_client_said() {
        let of = |code| Error::from_code("op", Some(code), false, "said");
        assert!(matches!(of(RDKafkaErrorCode::ProducerFenced), Error::ProducerFenced { .. }));
        assert!(matches!(of(RDKafkaErrorCode::InvalidProducerEpoch), Error::ProducerFenced { .. }));
        assert!(matches!(of(RDKafkaErrorCode::UnknownMemberId), Error::TaskMigrated { .. }));
        assert!(matches!(of(RDKafkaErrorCode::IllegalGeneration), Error::TaskMigrated { .. }));
        assert!(matches!(of(RDKafkaErrorCode::RebalanceInProgress), Error::TaskMigrated { .. }));
        assert!(matches!(of(RDKafkaErrorCode::RequestTimedOut), Error::Kafka { .. }));
        assert!(matches!(Error::from_code("op", None, true, "fatal"), Error::ProducerFenced { .. }));
        assert_eq!(of(RDKafkaErrorCode::ProducerFenced).recovery(), Recovery::NewProducer);
        assert_eq!(of(RDKafkaErrorCode::UnknownMemberId).recovery(), Recovery::RollBack);
        assert_eq!(of(RDKafkaErrorCode::NetworkException).recovery(), Recovery::RollBack);
        let e =
            Error::from_kafka("commit_transaction", KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced));
        assert!(matches!(&e, Error::ProducerFenced { op, .. } if op == "commit_transaction"), "{e}");
        for recoverable in
            [of(RDKafkaErrorCode::ProducerFenced), of(RDKafkaErrorCode::UnknownMemberId), Error::ShuttingDown]
        {
            assert!(!recoverable.is_fatal(), "{recoverable}");
        }
        assert!(Error::Config("x".into()).is_fatal());
    }

    #[test]
    fn should_make_a_corrupted_store_a_corrupted_task_and_keep_other_store_errors() {
        let task = TaskId { subtopology: 1, partition: 3 };
        let corrupted = moldau_state_store::Error::Corrupted { store: "counts".into(), reason: "no meta".into() };
        let e = Error::of_task_store(task, corrupted);
        assert_eq!(e.recovery(), Recovery::RestoreTask(task));
        assert!(!e.is_fatal());
        assert_eq!(
            e.to_string(),
            "task 1_3 corrupted: store 'counts' is corrupted (no meta); it will be rebuilt from its changelog"
        );
        let closed = moldau_state_store::Error::Closed { store: "counts".into() };
        let e = Error::of_task_store(task, closed);
        assert!(matches!(e, Error::Store(_)) && e.is_fatal(), "{e}");
    }

    #[test]
    fn should_keep_the_serdes_error_as_the_source() {
        use moldau_state_store::{JsonSerde, Serde};
        let serde_error = JsonSerde::<u64>::default().deserialize(b"{not json").unwrap_err();
        let e = Error::Deserialization {
            node: "KSTREAM-SOURCE-0000000000".into(),
            what: "value",
            topic: "in".into(),
            partition: 0,
            offset: 7,
            source: serde_error,
        };
        let serde = std::error::Error::source(&e).expect("the serde's error");
        let json = serde.source().expect("serde_json's error under it");
        assert_eq!(serde.to_string(), format!("JSON: {json}"), "the format library's own error, under the serde's");
        assert!(
            e.to_string()
                .starts_with("source 'KSTREAM-SOURCE-0000000000': cannot deserialize the value of in-0@7: JSON: "),
            "{e}"
        );
    }
}
