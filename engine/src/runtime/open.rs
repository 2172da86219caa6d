//! Opening tasks on assignment: the committed offsets first, then each store checked
//! against its changelog and queued for restoring up to the committed position, and the task
//! resumed at the committed stream time (see [`TaskMeta`]). A task with stores to restore
//! waits in `restoring` (its partitions paused) until the restorer has them all.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

use super::core::{Core, Io, PartitionQueue, TaskEntry, TaskPartition, PERSIST_INTERVAL};
use super::io::{Clock, Consumer, OpenedStore, Partition, Position, Restore, Stores};
use super::offset_meta::TaskMeta;
use super::restore::RestoreWork;
use super::task::StreamTask;
use crate::error::Result;
use crate::processor::TaskId;

impl<I: Io> Core<I> {
    /// Creates the tasks of `partitions` and queues their stores for restoring; returns
    /// where the consumer starts reading each partition (the caller pauses the restoring
    /// tasks' partitions once they are assigned).
    ///
    /// The committed offsets are read first (stable: no transactional commit pending), then
    /// each store is restored up to the changelog position committed with them (their
    /// metadata; see [`TaskMeta`]), so the state matches the offsets the task resumes from,
    /// and the task resumes at the stream time committed with them. A store whose checkpoint
    /// lies outside its changelog (past its end, before its start, past the committed position)
    /// is corrupted: it is wiped and restored from the start of its changelog.
    pub(super) fn open_tasks(&mut self, partitions: &[Partition]) -> Result<Vec<Position>> {
        let mut by_task: BTreeMap<TaskId, Vec<TaskPartition>> = BTreeMap::new();
        for (topic, partition) in partitions {
            let Some(logical) = self.spec.names.logical(topic).cloned() else { continue };
            let Some(s) = self.spec.topology.subtopology_reading(&logical) else { continue };
            let id = TaskId { subtopology: s, partition: *partition };
            by_task.entry(id).or_default().push((logical, topic.as_str().into(), *partition));
        }
        let committed = self.consumer.committed(partitions, &self.spec.shared.shutdown)?;
        let mut positions = Vec::new();
        let wall = self.clock.wall_ms();
        let mut work = Vec::new();
        for (id, parts) in by_task {
            if self.tasks.contains_key(&id) || self.restoring.contains_key(&id) {
                tracing::warn!(task = %id, "a task was assigned twice; keeping the open one");
                continue;
            }
            let meta = TaskMeta::newest(
                parts.iter().filter_map(|(_, physical, p)| committed.get(&(physical.to_string(), *p))?.1.clone()),
            );
            // Nothing committed yet, at least once: the input is processed from the start, so
            // the committed state is empty, and whatever the changelog holds was written by a
            // run that never committed (a crash before the first commit). Exactly-once has no
            // such records (read_committed), and whatever it has was committed (a punctuation's
            // writes before any input). Offsets committed without our metadata (an older
            // version, a reset tool) restore to the changelog's end.
            let nothing_committed = parts
                .iter()
                .all(|(_, physical, p)| committed.get(&(physical.to_string(), *p)).is_none_or(|c| c.0.is_none()));
            // The committed position may lie past the last stable offset (a transaction left
            // open holds it back; the restore waits), never past the high watermark unless the
            // changelog lost records (deleted and made again): then the restore takes what is
            // there.
            let limit = |store: &str, high: i64| match &meta {
                Some(m) => m.changelog.get(store).map(|u| {
                    if *u > high {
                        tracing::error!(
                            store,
                            task = %id,
                            committed_position = *u,
                            changelog_end = high,
                            "the changelog ends before the committed position: it lost records; restoring what it has"
                        );
                    }
                    (*u).min(high)
                }),
                None if nothing_committed && !self.eos => Some(0),
                None => None,
            };

            // Each changelogged store's changelog: its offsets, and where to restore up to.
            let mut changelogs: BTreeMap<String, (i64, i64, Option<i64>)> = BTreeMap::new();
            for store in self.spec.topology.stores_of(id.subtopology) {
                if !self.logged.contains(store.name()) {
                    continue;
                }
                let topic = self.spec.names.changelog(store.name());
                let (low, high) = self.restorer.watermarks(&topic, id.partition, &self.spec.shared.shutdown)?;
                let until = limit(store.name(), high);
                changelogs.insert(store.name().to_string(), (low, high, until));
            }
            let stores = &mut self.stores;
            let wiped = &self.spec.shared.stores_wiped;
            let shutdown = &self.spec.shared.shutdown;
            // Found corrupted while it ran: every store is rebuilt from its changelog.
            let corrupted = self.corrupted.remove(&id);
            let mut readers = Vec::new();
            let mut task = StreamTask::new(
                &self.spec.topology,
                id,
                &mut |_, name: &str| {
                    let OpenedStore { mut store, mut reader, rebuilt } = stores.open(id, name, shutdown)?;
                    if let Some(why) = rebuilt {
                        tracing::warn!(store = name, task = %id, reason = %why, "store rebuilt from its changelog");
                    }
                    let wipe = if corrupted {
                        tracing::warn!(store = name, task = %id, "task corrupted: wiping the store");
                        true
                    } else if let Some(&(low, high, until)) = changelogs.get(name) {
                        let at = store.checkpoint().map_or(0, |c| c.changelog_offset);
                        let outside = at > high || until.is_some_and(|u| at > u) || (at > 0 && at < low);
                        if outside {
                            tracing::warn!(
                                store = name,
                                task = %id,
                                checkpoint = at,
                                changelog_start = low,
                                changelog_end = high,
                                committed_position = ?until,
                                "task corrupted: the store's checkpoint lies outside its changelog; wiping the \
                                 store and restoring it from the start of its changelog"
                            );
                        }
                        outside
                    } else {
                        false
                    };
                    if wipe {
                        wiped.fetch_add(1, Ordering::Relaxed);
                        drop((store, reader));
                        stores.wipe(id, name)?;
                        OpenedStore { store, reader, .. } = stores.open(id, name, shutdown)?;
                    }
                    if let Some(reader) = reader {
                        readers.push((name.to_string(), reader));
                    }
                    Ok(store)
                },
                wall,
            )?;
            task.resume_stream_time(meta.as_ref().map_or(-1, |m| m.stream_time));
            task.set_bad_input(self.spec.config.deserialization_handler.bad_input());
            let before = work.len();
            for (name, store) in task.stores() {
                if let Some(&(_, _, until)) = changelogs.get(name) {
                    work.push(RestoreWork {
                        task: id,
                        topic: self.spec.names.changelog(name),
                        partition: id.partition,
                        store,
                        until,
                    });
                }
            }
            let mut queues = Vec::new();
            for (logical, physical, partition) in parts {
                let offset = committed.get(&(physical.to_string(), partition)).and_then(|c| c.0);
                positions.push((physical.to_string(), partition, offset));
                self.routes.insert(&physical, partition, (id, queues.len()));
                queues.push(PartitionQueue {
                    logical,
                    physical,
                    partition,
                    records: VecDeque::new(),
                    consumed: offset,
                    sealed: offset,
                    committed: offset,
                });
            }
            let entry = TaskEntry { task, queues, idle_since: None, dirty: false, readers };
            if work.len() > before {
                self.restoring.insert(id, entry);
            } else {
                self.start_task(id, entry);
            }
            self.spec.shared.tasks_created.fetch_add(1, Ordering::Relaxed);
        }
        self.restorer.add(work);
        tracing::info!(
            thread = self.spec.index,
            running = ?self.tasks.keys().collect::<Vec<_>>(),
            restoring = ?self.restoring.keys().collect::<Vec<_>>(),
            "tasks assigned"
        );
        self.publish_tasks();
        Ok(positions)
    }

    /// Makes restored task `id` run.
    pub(super) fn start_task(&mut self, id: TaskId, entry: TaskEntry) {
        // Commits more often than stores persist: each commit's writes stay in memory and go
        // to RocksDB once per PERSIST_INTERVAL, each key once (see `commit`).
        let every_commit = self.spec.config.effective_commit_interval() >= PERSIST_INTERVAL;
        for (_, store) in entry.task.stores() {
            store.borrow_mut().set_persist_on_commit(every_commit);
        }
        tracing::debug!(thread = self.spec.index, task = %id, "task running");
        self.tasks.insert(id, entry);
    }
}
