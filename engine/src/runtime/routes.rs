//! Where each consumed partition's records go: the stream thread's map from a message's topic
//! and partition to its task and input queue.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::runtime::io::Message;

use crate::processor::TaskId;

/// Where each consumed partition's records go: by topic name, and by the consumer's topic key
/// once seen (librdkafka's topic handle: a message's topic name costs a UTF-8 check and a
/// string hash; its handle does not). Cleared whenever the assignment changes.
#[derive(Default)]
pub(super) struct Routes {
    /// Cluster topic → partition → (task, queue index).
    by_name: HashMap<Box<str>, HashMap<i32, (TaskId, usize)>>,
    /// (topic key, partition) → (task, queue index), or `None`: not ours.
    by_handle: FxHashMap<(usize, i32), Option<(TaskId, usize)>>,
}

impl Routes {
    /// Routes `topic`'s `partition` to queue `to.1` of task `to.0`.
    pub(super) fn insert(&mut self, topic: &str, partition: i32, to: (TaskId, usize)) {
        self.by_name.entry(topic.into()).or_default().insert(partition, to);
        self.by_handle.clear();
    }

    /// Routes `topic`'s `partition` nowhere.
    pub(super) fn remove(&mut self, topic: &str, partition: i32) {
        if let Some(p) = self.by_name.get_mut(topic) {
            p.remove(&partition);
        }
        self.by_handle.clear();
    }

    /// Routes nothing.
    pub(super) fn clear(&mut self) {
        self.by_name.clear();
        self.by_handle.clear();
    }

    /// Where message `m` goes, if it is ours.
    pub(super) fn get(&mut self, m: &impl Message) -> Option<(TaskId, usize)> {
        let key = (m.topic_key(), m.partition());
        if let Some(to) = self.by_handle.get(&key) {
            return *to;
        }
        let to = self.by_name.get(m.topic()).and_then(|p| p.get(&m.partition())).copied();
        self.by_handle.insert(key, to);
        to
    }
}
