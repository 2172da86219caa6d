//! Per-store options: change logging, the record cache and change forwarding.

/// Which changes a store hands to the downstream (see `take_changes` on the typed stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Changes {
    /// None: the processor forwards what it wants itself.
    #[default]
    Off,
    /// Each write's key, new value and timestamp (once per key per cache flush when cached).
    New,
    /// As `New`, plus the value the write replaced (Kafka Streams' `sendOldValues`, which
    /// aggregations over a table need). Costs a read per forwarded change.
    NewAndOld,
}

/// How a store behaves. The default logs every change, has no cache and forwards nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Produce a changelog record per write (per cache flush when cached). Default `true`.
    pub logging: bool,
    /// Bytes of record cache in front of the store; 0 turns caching off. Default 0.
    pub cache_bytes: usize,
    /// Which changes to hand downstream. Default [`Changes::Off`].
    pub changes: Changes,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { logging: true, cache_bytes: 0, changes: Changes::Off }
    }
}

impl StoreOptions {
    /// No changelog: the store is not backed by a changelog topic.
    pub fn without_logging(mut self) -> Self {
        self.logging = false;
        self
    }

    /// A record cache of `bytes` (0 turns it off).
    pub fn with_cache(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Forwards these changes.
    pub fn with_changes(mut self, changes: Changes) -> Self {
        self.changes = changes;
        self
    }
}
