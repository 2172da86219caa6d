//! What the core hands the restorer ([`Restore`](super::io::Restore)) and what it gets back.

use std::cell::RefCell;
use std::rc::Rc;

use moldau_state_store::StateStore;

use crate::processor::TaskId;

/// One store partition to restore.
pub(crate) struct RestoreWork {
    /// The task the store belongs to.
    pub(crate) task: TaskId,
    /// Changelog topic.
    pub(crate) topic: String,
    /// Partition (the task's).
    pub(crate) partition: i32,
    /// The store.
    pub(crate) store: Rc<RefCell<dyn StateStore>>,
    /// The changelog position committed with the task's input offsets: records from here on
    /// are not applied but logged again (see `kafka::restore`). `None`: to the end.
    pub(crate) until: Option<i64>,
}

/// What a restore step did.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Records applied.
    pub(crate) applied: u64,
    /// Keys logged again (records past the committed position).
    pub(crate) relogged: u64,
    /// Tasks whose stores are all restored (they leave the restorer).
    pub(crate) done: Vec<TaskId>,
}
