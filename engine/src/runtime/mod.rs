//! The runtime: tasks, their commit metadata and their commit cycle, as a core that is
//! driven one turn at a time through small I/O traits ([`io`]). The Kafka clients that
//! implement them, and the thread that drives the core, live in `kafka`.

pub(crate) mod collector;
mod commit;
pub(crate) mod commit_plan;
pub(crate) mod core;
#[cfg(test)]
mod failures;
pub(crate) mod io;
pub(crate) mod offset_meta;
mod open;
mod process;
mod queue;
mod rebalance;
mod recover;
pub(crate) mod restore;
mod routes;
pub(crate) mod stores;
pub(crate) mod task;
