//! What a task commits beside each of its input offsets, in the offset's metadata string (as
//! Kafka Streams keeps stream time there): the task's stream time, and for each changelogged
//! store the changelog position that belongs to the committed input offsets (the offset after
//! the last changelog record of the committed state).
//!
//! On open, a task takes its stream time from it, so a record dropped as late stays dropped
//! after a restart, and its stores restore up to those positions and no further: the state
//! then matches the input offsets it resumes from, under at-least-once too, where changelog
//! records written after the last commit are in the topic but their input is processed again.
//!
//! Format: `moldau1;t=<stream time>;c=<store>=<position>,<store>=<position>`. Store names are
//! topic-name characters (`[A-Za-z0-9._-]`), so the separators never occur in them. Anything
//! else (another application's metadata, a newer format) reads as "no metadata".

use std::collections::BTreeMap;

const PREFIX: &str = "moldau1;";

/// A task's commit metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskMeta {
    /// The task's stream time when its transaction was sealed (-1: none yet).
    pub(crate) stream_time: i64,
    /// Store name → the changelog offset after the committed state's last record.
    pub(crate) changelog: BTreeMap<String, i64>,
}

impl TaskMeta {
    /// The metadata string.
    pub(crate) fn encode(&self) -> String {
        let mut s = format!("{PREFIX}t={};c=", self.stream_time);
        for (i, (store, position)) in self.changelog.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(store);
            s.push('=');
            s.push_str(&position.to_string());
        }
        s
    }

    /// Parses a metadata string; `None` when it is not ours or malformed.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        let (time, stores) = rest.split_once(';')?;
        let stream_time = time.strip_prefix("t=")?.parse().ok()?;
        let stores = stores.strip_prefix("c=")?;
        let mut changelog = BTreeMap::new();
        for entry in stores.split(',').filter(|e| !e.is_empty()) {
            let (store, position) = entry.rsplit_once('=')?;
            changelog.insert(store.to_string(), position.parse().ok()?);
        }
        Some(TaskMeta { stream_time, changelog })
    }

    /// The newest of several partitions' metadata: partitions of one task committed together
    /// carry the same; one committed less recently (nothing consumed from it since) carries
    /// older, smaller values.
    pub(crate) fn newest(all: impl IntoIterator<Item = TaskMeta>) -> Option<TaskMeta> {
        all.into_iter().reduce(|mut a, b| {
            a.stream_time = a.stream_time.max(b.stream_time);
            for (store, position) in b.changelog {
                let e = a.changelog.entry(store).or_insert(position);
                *e = (*e).max(position);
            }
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_round_trip_and_refuse_what_is_not_ours() {
        let m = TaskMeta {
            stream_time: 1_700_000_000_123,
            changelog: [("counts".to_string(), 42), ("a.b-c_d".to_string(), 0)].into_iter().collect(),
        };
        assert_eq!(TaskMeta::parse(&m.encode()), Some(m.clone()));
        let none = TaskMeta { stream_time: -1, changelog: BTreeMap::new() };
        assert_eq!(TaskMeta::parse(&none.encode()), Some(none));
        for bad in
            ["", "AAAAAAE=", "moldau1;", "moldau1;t=x;c=", "moldau1;t=1;c=s", "moldau1;t=1;c=s=x", "moldau2;t=1;c="]
        {
            assert_eq!(TaskMeta::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn should_take_the_newest_of_a_tasks_partitions() {
        let a = TaskMeta { stream_time: 5, changelog: [("s".to_string(), 10)].into_iter().collect() };
        let b =
            TaskMeta { stream_time: 7, changelog: [("s".to_string(), 8), ("u".to_string(), 1)].into_iter().collect() };
        let n = TaskMeta::newest([a, b]).unwrap();
        assert_eq!(n.stream_time, 7);
        assert_eq!(n.changelog, [("s".to_string(), 10), ("u".to_string(), 1)].into_iter().collect());
        assert_eq!(TaskMeta::newest([]), None);
    }
}
