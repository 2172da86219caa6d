//! Running a topology with no broker (Kafka Streams' `TopologyTestDriver`).

mod driver;

pub use driver::TopologyTestDriver;
