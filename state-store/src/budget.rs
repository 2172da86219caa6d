//! One memory budget shared by every RocksDB store of the process: a shared LRU block cache and
//! a shared write-buffer manager, so adding stores (tasks) never adds memory.

use rocksdb::{Cache, WriteBufferManager};

/// Default total budget: 256 MiB.
pub const DEFAULT_BUDGET_BYTES: usize = 256 << 20;
/// Share of the budget given to memtables (the rest is block cache): one quarter.
pub const DEFAULT_WRITE_BUFFER_SHARE: f64 = 0.25;

/// The shared memory of all stores. Clone it into every store of the process.
#[derive(Clone)]
pub struct MemoryBudget {
    pub(crate) cache: Cache,
    pub(crate) write_buffers: WriteBufferManager,
    total: usize,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget").field("total", &self.total).finish()
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes, `write_buffer_share` of it for memtables. Memtable memory is
    /// also charged to the block cache, so the two together stay within `total`.
    pub fn new(total: usize, write_buffer_share: f64) -> Self {
        let cache = Cache::new_lru_cache(total);
        let share = write_buffer_share.clamp(0.05, 0.9);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            (total as f64 * share) as usize,
            false,
            cache.clone(),
        );
        MemoryBudget { cache, write_buffers, total }
    }

    /// Bytes the shared block cache holds now, memtable reservations included.
    pub fn usage_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// Total bytes of the budget.
    pub fn total_bytes(&self) -> usize {
        self.total
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_BUDGET_BYTES, DEFAULT_WRITE_BUFFER_SHARE)
    }
}
