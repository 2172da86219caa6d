//! The state-store error type.

/// What went wrong in a state store. Every variant names the store it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB refused an operation.
    #[error("store '{store}': RocksDB {op} failed: {source}")]
    Rocks {
        /// Store name.
        store: String,
        /// The operation (open, get, write, ...).
        op: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// The store's directory or checkpoint is missing or unreadable. The store must be rebuilt
    /// from its changelog (see [`crate::RocksStore::destroy`]).
    #[error("store '{store}' is corrupted ({reason}); it will be rebuilt from its changelog")]
    Corrupted {
        /// Store name.
        store: String,
        /// What was found wrong.
        reason: String,
    },
    /// A key or value did not serialize or deserialize.
    #[error("store '{store}': {what} for key {key} does not {dir}: {source}")]
    Serde {
        /// Store name.
        store: String,
        /// "key" or "value".
        what: &'static str,
        /// "serialize" or "deserialize".
        dir: &'static str,
        /// The key, hex-encoded (the raw bytes when the key itself failed).
        key: String,
        /// The serde's error.
        source: crate::serde::SerdeError,
    },
    /// A changelog record handed to restore cannot belong to this store.
    #[error("store '{store}': changelog record with key {key} is malformed: {reason}")]
    BadChangelog {
        /// Store name.
        store: String,
        /// The record's key, hex-encoded.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store was driven in an order it does not allow (an engine bug).
    #[error("store '{store}': {reason}")]
    InvalidUse {
        /// Store name.
        store: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was closed (its task moved or the application stopped) while a reader
    /// wanted it.
    #[error("store '{store}' is closed (its task moved or the application stopped)")]
    Closed {
        /// Store name.
        store: String,
    },
    /// A filesystem operation failed.
    #[error("store '{store}': {op}: {source}")]
    Io {
        /// Store name.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the store must be wiped and restored from its changelog (Kafka Streams'
    /// `TaskCorrupted`).
    pub fn requires_restore(&self) -> bool {
        match self {
            Error::Corrupted { .. } => true,
            Error::Rocks { source, .. } => matches!(source.kind(), rocksdb::ErrorKind::Corruption),
            _ => false,
        }
    }

    /// Whether opening failed because another handle holds the store's lock (another thread
    /// of the process still closing it, say): worth retrying once that handle is gone.
    pub fn is_lock_held(&self) -> bool {
        match self {
            Error::Rocks { op: "open", source, .. } => {
                matches!(source.kind(), rocksdb::ErrorKind::IOError) && source.to_string().contains("lock")
            }
            _ => false,
        }
    }
}

/// Result with the state-store [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lower-case hex of at most the first 64 bytes of `bytes` (keys in error messages).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s.push_str("...");
    }
    s
}
