//! Transactional offset commits (TxnOffsetCommit, KIP-98 and KIP-447): pending per producer
//! until the producer's marker reaches the group's `__consumer_offsets` partition.

use super::offsets::OffsetRecord;
use super::state::{Group, PendingOffsets};
use super::GroupCoordinator;
use crate::cluster::key_partition;
use crate::protocol::codes;

impl GroupCoordinator {
    /// The `__consumer_offsets` partition of `group`.
    #[cfg(test)]
    pub(crate) fn partition_of(&self, group: &str) -> i32 {
        key_partition(group, self.offsets_partitions)
    }

    /// Validates a TxnOffsetCommit's member, instance and generation the way Kafka does: a
    /// member id or generation that is given must match (KIP-447); `-1` and `""` skip the check
    /// (a producer outside any group).
    pub(crate) fn check_txn_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(codes::INVALID_GROUP_ID);
        }
        let Some(group) = self.groups.get(group_id) else {
            return if generation < 0 && member_id.is_empty() { Ok(()) } else { Err(codes::ILLEGAL_GENERATION) };
        };
        if let Some(inst) = instance_id {
            if group.instances.get(inst).is_some_and(|known| known != member_id) {
                return Err(codes::FENCED_INSTANCE_ID);
            }
        }
        if !member_id.is_empty() && !group.members.contains_key(member_id) {
            return Err(codes::UNKNOWN_MEMBER_ID);
        }
        if generation >= 0 && generation != group.generation {
            return Err(codes::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Records a transactional offset commit of `producer_id` (already written to the log).
    pub(crate) fn add_pending_txn(&mut self, producer_id: i64, r: OffsetRecord) {
        let Some(value) = r.value else { return };
        let at = self.next_write();
        let group = self.groups.entry(r.group.clone()).or_insert_with(|| Group::new(&r.group));
        group.pending_txn.entry(producer_id).or_default().insert((r.topic, r.partition), (value, at));
    }

    /// A marker of `producer_id` reached offsets partition `partition`: its pending offsets of
    /// the groups on that partition become committed, or are dropped on abort. As in Kafka, a
    /// pending offset does not replace one written after it (a plain commit, a deletion).
    pub(crate) fn complete_txn(&mut self, producer_id: i64, commit: bool, partition: i32) {
        let n = self.offsets_partitions;
        for group in self.groups.values_mut() {
            if key_partition(&group.id, n) != partition {
                continue;
            }
            let Some(pending) = group.pending_txn.remove(&producer_id) else { continue };
            if commit {
                for (key, (entry, at)) in pending {
                    if group.written.get(&key).is_none_or(|w| *w < at) {
                        group.written.insert(key.clone(), at);
                        group.offsets.insert(key, entry);
                    }
                }
            }
        }
    }

    /// Whether a transactional commit of `(topic, partition)` is waiting for its marker
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub(crate) fn has_pending_txn(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.groups.get(group).is_some_and(|g| {
            g.pending_txn.values().any(|m: &PendingOffsets| m.contains_key(&(topic.to_string(), partition)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::group::state::OffsetEntry;

    fn coordinator() -> GroupCoordinator {
        GroupCoordinator::new(&BrokerConfig::from_overrides(Default::default()).unwrap())
    }

    fn record(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: "in".into(),
            partition,
            value: Some(OffsetEntry { offset, leader_epoch: -1, metadata: String::new(), commit_ms: 0 }),
        }
    }

    #[test]
    fn should_commit_pending_offsets_on_commit_and_drop_them_on_abort() {
        let mut c = coordinator();
        let p = c.partition_of("g");
        c.add_pending_txn(7, record("g", 0, 10));
        assert!(c.has_pending_txn("g", "in", 0));
        assert!(c.group("g").unwrap().offsets.is_empty(), "not visible before the marker");
        c.complete_txn(7, false, p);
        assert!(!c.has_pending_txn("g", "in", 0));
        assert!(c.group("g").unwrap().offsets.is_empty());
        c.add_pending_txn(7, record("g", 0, 20));
        c.complete_txn(7, true, p + 1);
        assert!(c.has_pending_txn("g", "in", 0), "a marker on another offsets partition is not ours");
        c.complete_txn(7, true, p);
        assert_eq!(c.group("g").unwrap().offsets[&("in".to_string(), 0)].offset, 20);
    }

    #[test]
    fn should_keep_a_plain_commit_written_after_a_transactional_one_when_the_transaction_commits() {
        // Kafka completes a transactional offset commit only over offsets written before it.
        let mut c = coordinator();
        let p = c.partition_of("g");
        c.add_pending_txn(7, record("g", 0, 10));
        c.apply(record("g", 0, 30));
        c.add_pending_txn(7, record("g", 1, 11));
        c.complete_txn(7, true, p);
        let offsets = &c.group("g").unwrap().offsets;
        assert_eq!(offsets[&("in".to_string(), 0)].offset, 30, "the later plain commit stays");
        assert_eq!(offsets[&("in".to_string(), 1)].offset, 11);
        // A transactional commit written after a plain one replaces it.
        c.apply(record("g", 0, 40));
        c.add_pending_txn(8, record("g", 0, 50));
        c.complete_txn(8, true, p);
        assert_eq!(c.group("g").unwrap().offsets[&("in".to_string(), 0)].offset, 50);
    }

    #[test]
    fn should_check_member_and_generation_only_when_given() {
        let c = coordinator();
        assert_eq!(c.check_txn_commit("g", "", None, -1), Ok(()));
        assert_eq!(c.check_txn_commit("g", "m", None, 3), Err(codes::ILLEGAL_GENERATION));
        assert_eq!(c.check_txn_commit("", "", None, -1), Err(codes::INVALID_GROUP_ID));
        let mut c = coordinator();
        c.add_pending_txn(1, record("g", 0, 1));
        assert_eq!(c.check_txn_commit("g", "stranger", None, -1), Err(codes::UNKNOWN_MEMBER_ID));
        assert_eq!(c.check_txn_commit("g", "", None, 5), Err(codes::ILLEGAL_GENERATION));
        assert_eq!(c.check_txn_commit("g", "", None, 0), Ok(()));
    }
}
