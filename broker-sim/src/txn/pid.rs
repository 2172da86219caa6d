//! Producer id allocation: ids are handed out from blocks whose end is persisted before any id
//! of the block is used, so a restart never hands out an id twice.

use crate::error::Result;
use crate::storage::Dir;

/// The file holding the end of the last reserved block.
const FILE: &str = "producer-id-block";

/// Ids reserved per write of the block file.
const BLOCK: i64 = 1000;

/// Hands out unique producer ids.
#[derive(Debug)]
pub(crate) struct ProducerIdAllocator {
    next: i64,
    block_end: i64,
    dir: Option<Dir>,
}

impl ProducerIdAllocator {
    /// Opens the allocator; `dir` holds the end of the last reserved block (`None`: memory).
    pub(crate) fn open(dir: Option<Dir>) -> Self {
        let reserved = dir.as_ref().and_then(|d| d.read_string(FILE)).and_then(|s| s.trim().parse::<i64>().ok());
        let start = reserved.unwrap_or(0).max(0);
        ProducerIdAllocator { next: start, block_end: start, dir }
    }

    /// Makes sure ids at or below `id` are never handed out (ids found in the transaction log).
    pub(crate) fn ensure_above(&mut self, id: i64) {
        if self.next <= id {
            self.next = id + 1;
            self.block_end = self.block_end.max(self.next);
        }
    }

    /// The next unused producer id.
    pub(crate) fn next_id(&mut self) -> Result<i64> {
        if self.next >= self.block_end {
            let end = self.next + BLOCK;
            if let Some(d) = &self.dir {
                d.write_atomic(FILE, end.to_string().as_bytes())?;
            }
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_never_reuse_an_id_after_a_restart() {
        let disk = Dir::new(std::sync::Arc::new(crate::storage::SimFs::new()), "/data");
        disk.create().unwrap();
        let mut a = ProducerIdAllocator::open(Some(disk.clone()));
        let first: Vec<i64> = (0..3).map(|_| a.next_id().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        let mut b = ProducerIdAllocator::open(Some(disk));
        assert!(b.next_id().unwrap() > 2);
    }

    #[test]
    fn should_skip_ids_seen_in_the_transaction_log() {
        let mut a = ProducerIdAllocator::open(None);
        a.ensure_above(41);
        assert_eq!(a.next_id().unwrap(), 42);
    }
}
