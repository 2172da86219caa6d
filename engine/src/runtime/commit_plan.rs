//! The offsets a commit writes, with each task's [`TaskMeta`] in their metadata. The
//! changelog positions are known only once every record is acknowledged (delivery reports
//! give their offsets), so a plan is made when the transaction is sealed and turned into
//! offsets after the wait, on the commit's helper thread under exactly-once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::runtime::io::OffsetCommit;
use crate::runtime::offset_meta::TaskMeta;

/// One task's part of a commit.
#[derive(Debug, Clone)]
pub(crate) struct TaskPlan {
    /// Input partitions (cluster topic, partition) and their next offsets.
    pub(crate) partitions: Vec<(Arc<str>, i32, i64)>,
    /// The task's stream time at the seal.
    pub(crate) stream_time: i64,
    /// The task's changelogged stores.
    pub(crate) stores: Vec<StorePosition>,
}

/// Where a store's changelog stands.
#[derive(Debug, Clone)]
pub(crate) struct StorePosition {
    /// Store name.
    pub(crate) name: String,
    /// Changelog topic.
    pub(crate) topic: String,
    /// Changelog partition (the task's).
    pub(crate) partition: i32,
    /// The position of the last commit: kept when this one sent the store nothing.
    pub(crate) previous: i64,
}

/// What one commit writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitPlan {
    /// The tasks whose offsets or metadata changed.
    pub(crate) tasks: Vec<TaskPlan>,
}

impl CommitPlan {
    /// Whether there is nothing to commit.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The offsets with their metadata, given the last offset `delivered` to each changelog
    /// topic and partition by this commit's records.
    pub(crate) fn offsets(&self, delivered: &HashMap<String, HashMap<i32, i64>>) -> Vec<OffsetCommit> {
        let mut out = Vec::with_capacity(self.tasks.iter().map(|t| t.partitions.len()).sum());
        for task in &self.tasks {
            let meta = TaskMeta {
                stream_time: task.stream_time,
                changelog: task
                    .stores
                    .iter()
                    .map(|s| {
                        let sent = delivered.get(&s.topic).and_then(|p| p.get(&s.partition)).map(|o| o + 1);
                        (s.name.clone(), sent.map_or(s.previous, |o| o.max(s.previous)))
                    })
                    .collect(),
            }
            .encode();
            let metadata: Arc<str> = meta.into();
            for (topic, partition, offset) in &task.partitions {
                out.push(OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    metadata: metadata.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_put_each_tasks_positions_in_its_partitions_metadata() {
        let plan = CommitPlan {
            tasks: vec![TaskPlan {
                partitions: vec![("in".into(), 2, 17)],
                stream_time: 99,
                stores: vec![
                    StorePosition { name: "a".into(), topic: "app-a-changelog".into(), partition: 2, previous: 5 },
                    StorePosition { name: "b".into(), topic: "app-b-changelog".into(), partition: 2, previous: 3 },
                ],
            }],
        };
        let delivered: HashMap<String, HashMap<i32, i64>> =
            [("app-a-changelog".to_string(), [(2, 40), (1, 70)].into_iter().collect())].into_iter().collect();
        let offsets = plan.offsets(&delivered);
        assert_eq!(offsets.len(), 1);
        let e = &offsets[0];
        assert_eq!((&*e.topic, e.partition, e.offset), ("in", 2, 17));
        let meta = TaskMeta::parse(&e.metadata).unwrap();
        assert_eq!(meta.stream_time, 99);
        assert_eq!(meta.changelog["a"], 41, "after the last record delivered to its partition");
        assert_eq!(meta.changelog["b"], 3, "nothing sent: the last commit's position");
    }
}
