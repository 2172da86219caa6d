//! Changelog records: what every store write produces for the engine to send to the store's
//! compacted changelog topic, and what a restore applies.

/// One change: the stored key bytes (window and session keys already encoded, so a restore
/// rebuilds them as they were), the new value or `None` for a delete (a tombstone), and the
/// record timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Key bytes as stored.
    pub key: Vec<u8>,
    /// Value bytes, or `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// Timestamp of the write (ms).
    pub timestamp: i64,
}
