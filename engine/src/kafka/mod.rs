//! Running a topology against Kafka (through rdkafka): [`KafkaStreams`] starts stream threads
//! that share the input partitions with every other instance of the same `application.id`
//! through the consumer group, and commit at-least-once or exactly-once.

mod clock;
mod config;
mod consumer;
mod group;
mod hosts;
mod producer;
mod purge;
mod restore;
mod retry;
mod streams;
mod thread;
mod topic_handle;
mod topics;

pub use config::{DeserializationHandler, ErrorHandler, ProcessingGuarantee, StreamsConfig};
pub use hosts::StoreHost;
pub use streams::{KafkaStreams, StreamsMetrics, StreamsState, CLOSE_TIMEOUT};
pub(crate) use topics::TopicNames;
