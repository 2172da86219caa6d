//! Moldau state stores: typed key-value stores over RocksDB or memory, with a transaction
//! overlay, change logging and atomic commit of state plus offsets (DESIGN.md decision 5).
//!
//! The crate knows nothing about Kafka clients: it produces [`ChangelogRecord`]s for the engine
//! to send and applies them on restore.

mod budget;
mod changelog;
mod error;
mod kv;
mod memory;
mod raw;
mod rocks;
mod serde;

pub use budget::{MemoryBudget, DEFAULT_BUDGET_BYTES, DEFAULT_WRITE_BUFFER_SHARE};
pub use changelog::ChangelogRecord;
pub use error::{Error, Result};
pub use kv::KeyValueStore;
pub use memory::InMemoryStore;
pub use raw::{Checkpoint, RawStore, WriteMode, WriteSet};
pub use rocks::RocksStore;
pub use serde::{BincodeSerde, BytesSerde, JsonSerde, Serde, StringSerde};
