//! Moldau state stores (RocksDB and in-memory key-value, window and session stores). Filled in by the state-store issue.
