//! Real Kafka clients against broker-sim. Each test starts its own cluster on free ports.

mod bad_input;
mod compaction;
mod config_conformance;
mod group_conformance;
mod kcat;
mod python;
mod raw;
mod raw_group;
mod rdkafka_admin;
mod rdkafka_data;
mod rdkafka_groups;
mod record_errors;
mod tools;
mod txn;
mod txn_errors;
