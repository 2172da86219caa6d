//! Moldau state stores: typed key-value, window and session stores over RocksDB or memory,
//! with a record cache, a transaction overlay, change logging and atomic commit of state plus
//! offsets (DESIGN.md decision 5).
//!
//! The crate knows nothing about Kafka clients: it produces [`ChangelogRecord`]s for the engine
//! to send and applies them on restore. [`StateStore`] is the engine's side of every store.

mod budget;
mod cache;
mod changelog;
mod core;
mod error;
mod kv;
mod memory;
mod options;
mod raw;
mod rocks;
mod serde;
mod session;
mod store;
mod typed;
mod window;

pub use budget::{MemoryBudget, DEFAULT_BUDGET_BYTES, DEFAULT_WRITE_BUFFER_SHARE};
pub use changelog::ChangelogRecord;
pub use error::{Error, Result};
pub use kv::KeyValueStore;
pub use memory::InMemoryStore;
pub use options::{Changes, StoreOptions};
pub use raw::{Checkpoint, RawBatch, RawStore, Space, WriteMode, WriteSet};
pub use rocks::{RocksStore, StoreReader};
pub use serde::{BincodeSerde, BytesSerde, I64Serde, JsonSerde, Serde, SerdeError, StringSerde, U64Serde};
pub use session::{SessionSpec, SessionStore};
pub use store::StateStore;
pub use typed::{Change, Window, Windowed};
pub use window::{WindowSpec, WindowStore};
