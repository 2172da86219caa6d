//! What every store offers the engine, whatever its type: the commit protocol.

use crate::changelog::ChangelogRecord;
use crate::error::Result;
use crate::raw::Checkpoint;

/// The engine's side of a store: flush, drain the changelog, commit or abort, restore.
///
/// The engine drives each store of a task through this cycle:
/// 1. process records (typed reads and writes; forward [`Change`](crate::Change)s if the
///    store produces them);
/// 2. before committing the Kafka transaction: [`flush_cache`](Self::flush_cache), then send
///    [`drain_changelog`](Self::drain_changelog)'s records to the changelog topic in the
///    transaction;
/// 3. optionally [`seal`](Self::seal) the transaction and go on processing (the next
///    transaction) while Kafka commits;
/// 4. after the Kafka commit: [`commit`](Self::commit) with the offset after the last changelog
///    record and the input offsets; after an abort: [`abort`](Self::abort).
///
/// On start-up, read the changelog from [`checkpoint`](Self::checkpoint)'s `changelog_offset`
/// (read_committed) and apply it with [`restore`](Self::restore), then
/// [`finish_restore`](Self::finish_restore).
pub trait StateStore: Send {
    /// The store's name.
    fn name(&self) -> &str;
    /// The last committed checkpoint.
    fn checkpoint(&self) -> &Checkpoint;
    /// Flushes the record cache: its writes become changelog records and changes.
    fn flush_cache(&mut self) -> Result<()>;
    /// Moves the changelog records written since the last call to the end of `out`. When
    /// `out` is empty the two buffers are swapped, so a caller that clears and reuses its
    /// buffer lets both keep their capacity: no allocation per drain once warm.
    fn drain_changelog_into(&mut self, out: &mut Vec<ChangelogRecord>);
    /// Takes the changelog records written since the last call.
    fn drain_changelog(&mut self) -> Vec<ChangelogRecord> {
        let mut out = Vec::new();
        self.drain_changelog_into(&mut out);
        out
    }
    /// Ends the transaction here: the writes so far are the ones the next
    /// [`commit`](Self::commit) applies; later writes belong to the next transaction, readable
    /// on top of the sealed one. The cache must have been flushed and the changelog drained, or
    /// this fails with [`Error::InvalidUse`](crate::Error::InvalidUse).
    fn seal(&mut self) -> Result<()>;
    /// Applies the sealed transaction's writes (all writes, sealing first, when none was
    /// sealed) with `changelog_offset` (the next offset after its changelog records) and the
    /// input offsets `(topic, partition, next offset)` in one atomic write. Without a seal, the
    /// cache must have been flushed and the changelog drained, or this fails with
    /// [`Error::InvalidUse`](crate::Error::InvalidUse).
    fn commit(&mut self, changelog_offset: i64, input_offsets: &[(String, i32, i64)]) -> Result<()>;
    /// Drops this transaction's writes (and a sealed one's), changelog records and changes.
    fn abort(&mut self);
    /// Applies changelog records read back from the changelog topic, the last at offset
    /// `last_offset`, in bulk without the write-ahead log.
    fn restore(&mut self, records: Vec<ChangelogRecord>, last_offset: i64) -> Result<()>;
    /// Ends a restore: makes the restored state durable.
    fn finish_restore(&mut self) -> Result<()>;
    /// Logs the current value of `key` (changelog key bytes; a tombstone when the store does
    /// not hold it) again, with `timestamp`, as the next changelog record; the state does not
    /// change. After a restore that stopped short of the changelog's end (records written after
    /// the last commit, whose input is processed again), relogging each key those records name
    /// makes any later replay of the changelog end at the restored state.
    fn relog(&mut self, key: Vec<u8>, timestamp: i64) -> Result<()>;
    /// Whether each [`commit`](Self::commit) writes to the local store (the default), or
    /// commits stay in memory, readable, until [`persist`](Self::persist), a size limit or
    /// close. Only a store with a changelog defers: after a crash, the
    /// restore from the changelog brings back the commits that were not written.
    fn set_persist_on_commit(&mut self, on: bool);
    /// Writes the commits not yet written to the local store (in the background).
    fn persist(&mut self) -> Result<()>;
}

/// Implements [`StateStore`] for a typed store with a `core` field.
macro_rules! impl_state_store {
    ($store:ident) => {
        impl<K: 'static, V: 'static> $crate::store::StateStore for $store<K, V> {
            fn name(&self) -> &str {
                self.core.name()
            }
            fn checkpoint(&self) -> &$crate::raw::Checkpoint {
                self.core.checkpoint()
            }
            fn flush_cache(&mut self) -> $crate::error::Result<()> {
                self.core.flush_cache()
            }
            fn drain_changelog_into(&mut self, out: &mut Vec<$crate::changelog::ChangelogRecord>) {
                self.core.drain_changelog_into(out)
            }
            fn seal(&mut self) -> $crate::error::Result<()> {
                self.core.seal()
            }
            fn commit(
                &mut self,
                changelog_offset: i64,
                input_offsets: &[(String, i32, i64)],
            ) -> $crate::error::Result<()> {
                self.core.commit(changelog_offset, input_offsets)
            }
            fn abort(&mut self) {
                self.core.abort()
            }
            fn restore(
                &mut self,
                records: Vec<$crate::changelog::ChangelogRecord>,
                last_offset: i64,
            ) -> $crate::error::Result<()> {
                self.core.restore(records, last_offset)
            }
            fn finish_restore(&mut self) -> $crate::error::Result<()> {
                self.core.finish_restore()
            }
            fn relog(&mut self, key: Vec<u8>, timestamp: i64) -> $crate::error::Result<()> {
                self.core.relog(key, timestamp)
            }
            fn set_persist_on_commit(&mut self, on: bool) {
                self.core.set_persist_on_commit(on)
            }
            fn persist(&mut self) -> $crate::error::Result<()> {
                self.core.persist()
            }
        }
    };
}
pub(crate) use impl_state_store;
