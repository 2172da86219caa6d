//! A stream task: one sub-topology instantiated for one partition. It processes raw input
//! records, keeps stream time, fires punctuations, and exposes its output and stores to the
//! commit cycle. It does no I/O.

use std::cell::RefCell;
use std::rc::Rc;

use moldau_state_store::StateStore;

use crate::error::{Error, Result};
use crate::processor::context::{BadInputPolicy, Schedule, TaskState};
use crate::processor::{PunctuationType, RecordMetadata, TaskId};
use crate::runtime::collector::OutputRecord;
use crate::topology::build::{Instance, RawStoreSupplier};
use crate::topology::{InputRecord, Topology};

/// One task (Kafka Streams' `StreamTask`).
pub(crate) struct StreamTask {
    instance: Instance,
    state: TaskState,
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.state.id).field("stream_time", &self.state.stream_time).finish()
    }
}

impl StreamTask {
    /// Instantiates `id`'s sub-topology with stores from `raw`.
    pub(crate) fn new(
        topology: &Topology,
        id: TaskId,
        raw: &mut RawStoreSupplier<'_>,
        wall_clock: i64,
    ) -> Result<Self> {
        let instance = topology.instantiate(id, raw)?;
        Ok(StreamTask { instance, state: TaskState::new(id, wall_clock) })
    }

    /// What the task does with records its processors reject.
    pub(crate) fn set_bad_input(&mut self, policy: BadInputPolicy) {
        self.state.bad_input = policy;
    }

    /// The records its processors rejected since the last call.
    pub(crate) fn take_rejected(&mut self) -> u64 {
        std::mem::take(&mut self.state.rejected)
    }

    /// The task's id.
    pub(crate) fn id(&self) -> TaskId {
        self.state.id
    }

    /// The task's stream time: the largest record timestamp it has seen (-1: none).
    pub(crate) fn stream_time(&self) -> i64 {
        self.state.stream_time
    }

    /// Resumes at the stream time `t` a previous owner committed: records older than a
    /// window's close stay late, and stream-time punctuations, which fired up to `t` before,
    /// next fire an interval after it.
    pub(crate) fn resume_stream_time(&mut self, t: i64) {
        if t <= self.state.stream_time {
            return;
        }
        self.state.stream_time = t;
        self.state.start_stream_time = t;
        for s in &mut self.instance.schedules {
            if s.kind == PunctuationType::StreamTime {
                s.next = Some(t.saturating_add(s.interval));
            }
        }
    }

    /// Processes one input record, then fires due stream-time punctuations.
    pub(crate) fn process(&mut self, record: &InputRecord) -> Result<()> {
        let source = self.instance.sources.get(&*record.topic).cloned().ok_or_else(|| {
            Error::InvalidTopology(format!("task {} has no source for topic '{}'", self.state.id, record.topic))
        })?;
        if record.timestamp > self.state.stream_time {
            self.state.stream_time = record.timestamp;
        }
        self.state.metadata =
            Some(RecordMetadata { topic: record.topic.clone(), partition: record.partition, offset: record.offset });
        let result = source.borrow_mut().process(record, &mut self.state);
        self.state.metadata = None;
        result?;
        self.punctuate(PunctuationType::StreamTime, self.state.stream_time)
    }

    /// Advances the wall clock to `now` and fires due wall-clock punctuations.
    pub(crate) fn advance_wall_clock(&mut self, now: i64) -> Result<()> {
        self.state.wall_clock = now;
        self.punctuate(PunctuationType::WallClockTime, now)
    }

    /// Fires the punctuations of `kind` due at `now`. A schedule fires when its clock is first
    /// known and then every interval; missed intervals fire once.
    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<()> {
        if now < 0 {
            return Ok(());
        }
        for i in 0..self.instance.schedules.len() {
            let Schedule { node, id, interval, next, kind: k } = self.instance.schedules[i].clone();
            if k != kind || next.is_some_and(|t| t > now) {
                continue;
            }
            self.instance.schedules[i].next = Some(now + interval);
            if let Some(target) = self.instance.lifecycles.get(&node).cloned() {
                target.borrow_mut().punctuate(id, now, &mut self.state)?;
            }
        }
        Ok(())
    }

    /// Has every processor forward what it holds back, parents first (nodes are numbered
    /// parents before children), so that what a parent forwards reaches a child before the
    /// child flushes.
    pub(crate) fn flush(&mut self) -> Result<()> {
        for node in self.instance.lifecycles.values() {
            node.borrow_mut().flush(&mut self.state)?;
        }
        Ok(())
    }

    /// Moves the records the sinks produced to the end of `out` (no allocation once warm).
    pub(crate) fn drain_output_into(&mut self, out: &mut Vec<OutputRecord>) {
        self.state.collector.drain_into(out)
    }

    /// The task's stores, for the commit cycle.
    pub(crate) fn stores(&self) -> impl Iterator<Item = (&str, Rc<RefCell<dyn StateStore>>)> {
        self.instance.stores.iter().map(|(n, s)| (n.as_str(), s.state.clone()))
    }

    /// The typed store `name` (for tests and interactive queries).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn typed_store<S: 'static>(&self, name: &str) -> Option<Rc<RefCell<S>>> {
        self.instance.stores.get(name)?.typed.downcast_ref::<Rc<RefCell<S>>>().cloned()
    }

    /// Closes every processor.
    pub(crate) fn close(&mut self) {
        for node in self.instance.lifecycles.values() {
            node.borrow_mut().close();
        }
    }
}
