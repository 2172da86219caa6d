//! Instantiated nodes of a task: typed processors wired to their typed children, sources that
//! deserialize, sinks that serialize into the task's record collector.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::processor::context::TaskState;
use crate::processor::{Headers, Processor, ProcessorContext, PunctuatorId, Record, RecordSerde};
use crate::runtime::collector::OutputRecord;

/// A node taking `(K, V)` records.
pub(crate) trait Node<K, V> {
    fn name(&self) -> &str;
    fn process(&mut self, record: Record<K, V>, task: &mut TaskState) -> Result<()>;
}

/// A child node, shared when several parents feed it.
pub(crate) type Child<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// A node with punctuations and a close hook (every processor).
pub(crate) trait Lifecycle {
    fn punctuate(&mut self, id: PunctuatorId, time: i64, task: &mut TaskState) -> Result<()>;
    fn flush(&mut self, task: &mut TaskState) -> Result<()>;
    fn close(&mut self);
}

/// A user processor and its children.
pub(crate) struct ProcessorNode<P, KOut, VOut> {
    pub(crate) name: String,
    pub(crate) processor: P,
    pub(crate) children: Vec<Child<KOut, VOut>>,
}

/// Punctuation and close, for a processor whose input types are fixed by `P`.
pub(crate) struct Typed<P, KIn, VIn, KOut, VOut> {
    pub(crate) node: ProcessorNode<P, KOut, VOut>,
    pub(crate) _types: std::marker::PhantomData<fn(KIn, VIn)>,
}

impl<P, KIn, VIn, KOut, VOut> Node<KIn, VIn> for Typed<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn name(&self) -> &str {
        &self.node.name
    }

    fn process(&mut self, record: Record<KIn, VIn>, task: &mut TaskState) -> Result<()> {
        let node = &mut self.node;
        let mut ctx = ProcessorContext { node: &node.name, children: &node.children, task };
        node.processor.process(record, &mut ctx)
    }
}

impl<P, KIn, VIn, KOut, VOut> Lifecycle for Typed<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn punctuate(&mut self, id: PunctuatorId, time: i64, task: &mut TaskState) -> Result<()> {
        let node = &mut self.node;
        let mut ctx = ProcessorContext { node: &node.name, children: &node.children, task };
        node.processor.punctuate(id, time, &mut ctx)
    }

    fn flush(&mut self, task: &mut TaskState) -> Result<()> {
        let node = &mut self.node;
        let mut ctx = ProcessorContext { node: &node.name, children: &node.children, task };
        node.processor.flush(&mut ctx)
    }

    fn close(&mut self) {
        self.node.processor.close()
    }
}

/// A raw Kafka record entering a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: null).
    pub value: Option<Vec<u8>>,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

/// A source: deserializes input records and forwards them.
pub(crate) trait Source {
    fn process(&mut self, record: &InputRecord, task: &mut TaskState) -> Result<()>;
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) name: String,
    pub(crate) keys: Arc<dyn RecordSerde<K>>,
    pub(crate) values: Arc<dyn RecordSerde<V>>,
    pub(crate) children: Vec<Child<K, V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Source for SourceNode<K, V> {
    fn process(&mut self, r: &InputRecord, task: &mut TaskState) -> Result<()> {
        let fail = |what, source| Error::Deserialization {
            node: self.name.clone(),
            what,
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            source,
        };
        let key = self.keys.deserialize(r.key.as_deref()).map_err(|e| fail("key", e))?;
        let value = self.values.deserialize(r.value.as_deref()).map_err(|e| fail("value", e))?;
        let record = Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() };
        let mut ctx = ProcessorContext { node: &self.name, children: &self.children, task };
        ctx.forward(record)
    }
}

/// Chooses a record's topic.
pub(crate) type TopicExtractor<K, V> = Arc<dyn Fn(&Record<K, V>) -> String + Send + Sync>;

/// Where a sink sends a record.
pub(crate) enum TopicChoice<K, V> {
    Fixed(Arc<str>),
    PerRecord(TopicExtractor<K, V>),
}

pub(crate) struct SinkNode<K, V> {
    pub(crate) name: String,
    pub(crate) topic: TopicChoice<K, V>,
    pub(crate) keys: Arc<dyn RecordSerde<K>>,
    pub(crate) values: Arc<dyn RecordSerde<V>>,
}

impl<K, V> Node<K, V> for SinkNode<K, V> {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&mut self, record: Record<K, V>, task: &mut TaskState) -> Result<()> {
        let topic: Arc<str> = match &self.topic {
            TopicChoice::Fixed(t) => t.clone(),
            TopicChoice::PerRecord(f) => f(&record).into(),
        };
        let fail =
            |what, source| Error::Serialization { node: self.name.clone(), what, topic: topic.to_string(), source };
        let Record { key, value, timestamp, headers } = record;
        let key = self.keys.serialize_owned(key).map_err(|e| fail("key", e))?;
        let value = self.values.serialize_owned(value).map_err(|e| fail("value", e))?;
        task.collector.send(OutputRecord { topic, key, value, timestamp, headers });
        Ok(())
    }
}
