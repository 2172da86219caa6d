//! Tasks' stores in RocksDB: `<state.dir>/<application.id>/<task>/<store>`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moldau_state_store::{MemoryBudget, RocksStore};

use super::io::{OpenedStore, Stores};
use crate::error::{Error, Result};
use crate::processor::TaskId;

/// RocksDB stores under one directory, sharing a memory budget.
#[derive(Debug, Clone)]
pub(crate) struct RocksStores {
    dir: PathBuf,
    budget: MemoryBudget,
}

impl RocksStores {
    /// Stores under `dir` (the application's state directory).
    pub(crate) fn new(dir: PathBuf, budget: MemoryBudget) -> Self {
        RocksStores { dir, budget }
    }

    /// Where store `name` of task `task` lives.
    pub(crate) fn path(&self, task: TaskId, name: &str) -> PathBuf {
        self.dir.join(task.to_string()).join(name)
    }

    /// The memory budget the stores share.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

impl Stores for RocksStores {
    /// Opens (or rebuilds, when corrupted) the store. While another handle holds it, waits
    /// for it, until the application closes.
    fn open(&mut self, task: TaskId, name: &str, shutdown: &AtomicBool) -> Result<OpenedStore> {
        let path = self.path(task, name);
        let mut attempts = 0u64;
        loop {
            match RocksStore::open_or_rebuild(&path, name, &self.budget) {
                Ok((store, rebuilt)) => {
                    let reader = Some(store.reader());
                    return Ok(OpenedStore { store: Box::new(store), reader, rebuilt });
                }
                // Closing while waiting: a clean stop, not an error.
                Err(e) if e.is_lock_held() && shutdown.load(Ordering::Relaxed) => return Err(Error::ShuttingDown),
                Err(e) if e.is_lock_held() => {
                    // Said once, then every 10 s.
                    if attempts.is_multiple_of(200) {
                        tracing::info!(store = name, error = %e, "the store is still held by another handle; waiting");
                    }
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn wipe(&mut self, task: TaskId, name: &str) -> Result<()> {
        Ok(RocksStore::destroy(&self.path(task, name), name)?)
    }
}
