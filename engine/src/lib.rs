//! The Moldau runtime: the Processor API, the `Topology` (the low-level graph of source,
//! processor and sink nodes with state stores), and tasks that run it.
//!
//! ```text
//! input records ─▶ StreamTask(sub-topology, partition)
//!                    SourceNode (deserialize) ─▶ processors (typed, stores) ─▶ SinkNode (serialize)
//!                  ─▶ output records + store changelogs ─▶ commit
//! ```

mod error;
pub mod failpoint;
pub mod kafka;
pub mod processor;
mod runtime;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topology;

pub use error::{Error, Recovery, Result, Source};
pub use kafka::{KafkaStreams, ProcessingGuarantee, StreamsConfig, StreamsState, CLOSE_TIMEOUT};
pub use processor::{
    BadInput, InitContext, Processor, ProcessorContext, PunctuationType, PunctuatorId, Record, RecordMetadata,
    StoreHandle, TaskId,
};
pub use runtime::collector::OutputRecord;
pub use topology::{StoreBuilder, Topology};

/// The state-store crate, re-exported for store types and serdes.
pub use moldau_state_store as state;
