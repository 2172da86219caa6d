//! Running a topology with no broker (Kafka Streams' `TopologyTestDriver`).

pub(crate) mod driver;
pub(crate) mod memory;

pub use driver::TopologyTestDriver;
