//! The runtime: tasks, their commit metadata and their commit cycle. Kafka I/O lives in `kafka`.

pub(crate) mod collector;
pub(crate) mod offset_meta;
pub(crate) mod task;
