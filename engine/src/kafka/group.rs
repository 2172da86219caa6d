//! The stream thread's side of the consumer group: which assignor a topology needs, and the
//! consumer context that records rebalance events for the thread's loop to act on.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::runtime::io::{Partition, Rebalance};
use crate::Topology;

/// The assignor for `topology`: `cooperative-sticky` when every sub-topology reads one topic,
/// else `range` (co-partitioned topics must be assigned together; see the thread module's docs).
pub(super) fn assignment_strategy(topology: &Topology) -> &'static str {
    let single = (0..topology.subtopology_count()).all(|s| topology.source_topics(s).len() <= 1);
    if single {
        "cooperative-sticky"
    } else {
        "range"
    }
}

pub(super) fn is_cooperative(consumer: &BaseConsumer<GroupContext>) -> bool {
    matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative)
}

/// Records rebalance events; while closing it hands partitions back at once.
#[derive(Debug, Default)]
pub(super) struct GroupContext {
    /// Events the loop has yet to act on.
    pub(super) events: Mutex<Vec<Rebalance>>,
    /// Set while the thread closes: hand everything back at once.
    pub(super) closing: AtomicBool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        if self.closing.load(Ordering::Relaxed) {
            // Take what the protocol insists on and give everything back.
            let _ = match (err, is_cooperative(consumer)) {
                (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => consumer.incremental_assign(tpl),
                (_, true) => consumer.incremental_unassign(tpl),
                (_, false) => consumer.unassign(),
            };
            return;
        }
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions(tpl)),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions(tpl)),
            other => Rebalance::Failed(format!("{other:?}")),
        };
        self.events.lock().push(event);
    }
}

/// The partitions of `tpl`.
fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

#[cfg(test)]
mod tests {
    use moldau_state_store::StringSerde;

    use super::*;
    use crate::processor::{nullable, required};

    /// A topology whose one source reads `topics`.
    fn reading(topics: &[&str]) -> Topology {
        let mut t = Topology::new();
        t.add_source::<Option<String>, String>("in", topics, nullable(StringSerde), required(StringSerde)).unwrap();
        t.add_sink::<Option<String>, String>("out", "out", nullable(StringSerde), required(StringSerde), &["in"])
            .unwrap();
        t
    }

    #[test]
    fn should_rebalance_cooperatively_only_when_every_subtopology_reads_one_topic() {
        assert_eq!(assignment_strategy(&reading(&["a"])), "cooperative-sticky");
        assert_eq!(assignment_strategy(&reading(&["a", "b"])), "range", "co-partitioned topics stay together");
    }
}
