//! What a processor reaches: at init its stores and punctuation schedule, while processing the
//! task's time, the record's origin and its children to forward to.

use std::any::Any;
use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use moldau_state_store::StateStore;

use super::record::{Record, RecordMetadata};
use crate::error::{Error, Result};
use crate::runtime::collector::RecordCollector;
use crate::topology::node::Child;

/// A task: sub-topology `subtopology` on input partition `partition` (printed `0_3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The partition of its source topics.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// Which clock a punctuation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// Stream time: the largest record timestamp the task has seen. Fires only as records
    /// arrive.
    StreamTime,
    /// Wall-clock time of the stream thread.
    WallClockTime,
}

/// Names one punctuation schedule of a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PunctuatorId(pub u32);

/// A scheduled punctuation.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) node: usize,
    pub(crate) id: PunctuatorId,
    pub(crate) interval: i64,
    pub(crate) kind: PunctuationType,
    /// Next time it fires; `None` until the clock is first known.
    pub(crate) next: Option<i64>,
}

/// A store a processor uses. Borrow it for each operation; never hold the borrow across a
/// `forward` (a downstream processor of the same task may use the same store).
pub struct StoreHandle<S>(Rc<RefCell<S>>);

impl<S> StoreHandle<S> {
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn from_rc(rc: Rc<RefCell<S>>) -> Self {
        StoreHandle(rc)
    }

    /// The store, for reads and writes.
    pub fn get(&self) -> RefMut<'_, S> {
        self.0.borrow_mut()
    }
}

impl<S> Clone for StoreHandle<S> {
    fn clone(&self) -> Self {
        StoreHandle(self.0.clone())
    }
}

impl<S> std::fmt::Debug for StoreHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

/// A store of a task: its typed form (for processors) and its [`StateStore`] form (for the
/// commit protocol).
pub(crate) struct TaskStore {
    pub(crate) typed: Box<dyn Any>,
    pub(crate) state: Rc<RefCell<dyn StateStore>>,
}

impl TaskStore {
    /// Registers a typed store.
    pub(crate) fn new<S: StateStore + 'static>(store: S) -> Self {
        let rc = Rc::new(RefCell::new(store));
        let state: Rc<RefCell<dyn StateStore>> = rc.clone();
        TaskStore { typed: Box::new(rc), state }
    }
}

/// What a processor gets in [`init`](super::Processor::init).
pub struct InitContext<'a> {
    pub(crate) node: &'a str,
    pub(crate) node_index: usize,
    pub(crate) task: TaskId,
    pub(crate) connected: &'a [String],
    pub(crate) stores: &'a BTreeMap<String, TaskStore>,
    pub(crate) schedules: &'a mut Vec<Schedule>,
}

impl std::fmt::Debug for InitContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitContext").field("node", &self.node).field("task", &self.task).finish()
    }
}

impl InitContext<'_> {
    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task
    }

    /// The store `name`, which must be connected to this processor and be of type `S`
    /// (`KeyValueStore<K, V>`, `WindowStore<K, V>` or `SessionStore<K, V>`).
    pub fn store<S: 'static>(&self, name: &str) -> Result<StoreHandle<S>> {
        let err =
            |reason: String| Error::StoreAccess { processor: self.node.to_string(), store: name.to_string(), reason };
        if !self.connected.iter().any(|s| s == name) {
            return Err(err("the store is not connected to this processor".into()));
        }
        let store = self.stores.get(name).ok_or_else(|| err("no such store".into()))?;
        let typed = store
            .typed
            .downcast_ref::<Rc<RefCell<S>>>()
            .ok_or_else(|| err(format!("the store is not a {}", std::any::type_name::<S>())))?;
        Ok(StoreHandle(typed.clone()))
    }

    /// Calls this processor's `punctuate` every `interval_ms` of `kind` time.
    pub fn schedule(&mut self, interval_ms: i64, kind: PunctuationType) -> Result<PunctuatorId> {
        if interval_ms <= 0 {
            return Err(Error::processing(
                self.node,
                format!("punctuation interval must be positive, got {interval_ms}"),
            ));
        }
        let id = PunctuatorId(self.schedules.iter().filter(|s| s.node == self.node_index).count() as u32);
        self.schedules.push(Schedule { node: self.node_index, id, interval: interval_ms, kind, next: None });
        Ok(id)
    }
}

/// What a task does with an input record that cannot be read: the deserialization
/// handler's choice, for records a processor rejects (see [`ProcessorContext::reject`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum BadInputPolicy {
    /// Log it and go on.
    #[default]
    Skip,
    /// Fail the task with a deserialization error.
    Fail,
    /// Send it to this topic with the task's output, with headers naming the error and its
    /// origin, and go on.
    DeadLetter(Arc<str>),
}

/// An input record a processor could not read, as it came from its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadInput<'a> {
    /// The topic it came from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key bytes.
    pub key: Option<&'a [u8]>,
    /// Its value bytes.
    pub value: Option<&'a [u8]>,
    /// Its timestamp (ms).
    pub timestamp: i64,
}

/// Per-task state every node sees while a record or punctuation runs.
#[derive(Debug)]
pub(crate) struct TaskState {
    pub(crate) id: TaskId,
    pub(crate) metadata: Option<RecordMetadata>,
    pub(crate) stream_time: i64,
    /// The stream time the task resumed at (-1: started fresh).
    pub(crate) start_stream_time: i64,
    pub(crate) wall_clock: i64,
    pub(crate) collector: RecordCollector,
    /// What [`ProcessorContext::reject`] does.
    pub(crate) bad_input: BadInputPolicy,
    /// Records rejected (skipped or dead-lettered) since the runtime last took the count.
    pub(crate) rejected: u64,
}

impl TaskState {
    /// A task's state before its first record.
    pub(crate) fn new(id: TaskId, wall_clock: i64) -> Self {
        TaskState {
            id,
            metadata: None,
            stream_time: -1,
            start_stream_time: -1,
            wall_clock,
            collector: RecordCollector::default(),
            bad_input: BadInputPolicy::default(),
            rejected: 0,
        }
    }
}

/// What a processor gets while processing: forwarding and the task's clocks.
pub struct ProcessorContext<'a, K, V> {
    pub(crate) node: &'a str,
    pub(crate) children: &'a [Child<K, V>],
    pub(crate) task: &'a mut TaskState,
}

impl<K, V> std::fmt::Debug for ProcessorContext<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").field("node", &self.node).field("task", &self.task.id).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> ProcessorContext<'_, K, V> {
    /// Sends `record` to every child.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        if let Some((last, rest)) = self.children.split_last() {
            for child in rest {
                child.borrow_mut().process(record.clone(), self.task)?;
            }
            last.borrow_mut().process(record, self.task)?;
        }
        Ok(())
    }

    /// Sends `record` to the child called `name` only.
    pub fn forward_to(&mut self, name: &str, record: Record<K, V>) -> Result<()> {
        let child = self
            .children
            .iter()
            .find(|c| c.borrow().name() == name)
            .ok_or_else(|| Error::processing(self.node, format!("no child called '{name}'")))?;
        child.borrow_mut().process(record, self.task)
    }
}

impl<K, V> ProcessorContext<'_, K, V> {
    /// This processor's name.
    pub fn name(&self) -> &str {
        self.node
    }

    /// The task.
    pub fn task_id(&self) -> TaskId {
        self.task.id
    }

    /// Where the current record came from (`None` in a punctuation).
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.metadata.as_ref()
    }

    /// The task's stream time: the largest record timestamp seen (-1 before any).
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The stream time the task started from: the one its previous owner committed (-1 when it
    /// starts fresh). A processor keeping its own observed stream time (the largest timestamp
    /// of the records it saw) starts from it, so a restart neither reopens nor closes windows.
    pub fn start_stream_time(&self) -> i64 {
        self.task.start_stream_time
    }

    /// The stream thread's wall-clock time (ms).
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock
    }

    /// Hands an input record this processor cannot read to the deserialization handler, as a
    /// source's serde failure goes to it: with `continue` it is logged and skipped, with
    /// `fail` this returns the error (return it to stop the task), with `dlq:<topic>` the raw
    /// record goes to the dead-letter topic in the task's output (in the same transaction
    /// under exactly-once), with headers naming the error and the record's origin. For
    /// processors that decode records themselves, often a batch after they arrived.
    pub fn reject(&mut self, input: BadInput<'_>, reason: &str) -> Result<()> {
        let error = Error::Deserialization {
            node: self.node.to_string(),
            what: "record",
            topic: input.topic.to_string(),
            partition: input.partition,
            offset: input.offset,
            source: moldau_state_store::SerdeError::new(reason),
        };
        match &self.task.bad_input {
            BadInputPolicy::Fail => return Err(error),
            BadInputPolicy::Skip => {
                tracing::warn!(error = %error, "skipping a record that cannot be read");
            }
            BadInputPolicy::DeadLetter(topic) => {
                tracing::warn!(error = %error, topic = %topic, "sending a record that cannot be read to the dead-letter topic");
                let headers = crate::runtime::collector::dead_letter_headers(
                    crate::processor::Headers::new(),
                    &error.to_string(),
                    input.topic,
                    input.partition,
                    input.offset,
                );
                self.task.collector.send(crate::runtime::collector::OutputRecord {
                    topic: Arc::clone(topic),
                    key: input.key.map(<[u8]>::to_vec),
                    value: input.value.map(<[u8]>::to_vec),
                    timestamp: input.timestamp,
                    headers,
                });
            }
        }
        self.task.rejected += 1;
        Ok(())
    }
}
