//! The runtime: tasks and their commit cycle. Kafka I/O lives in `kafka` (not yet here).

pub(crate) mod collector;
pub(crate) mod task;
