//! Instantiating a sub-topology for one task: stores first, then nodes children-first, each
//! built node registered under its input types for its parents to pick up.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use moldau_state_store::RawStore;

use super::node::{Child, Lifecycle, ProcessorNode, SinkNode, Source, SourceNode, TopicChoice, TopicExtractor, Typed};
use super::{NodeKind, Topology};
use crate::error::{Error, Result};
use crate::processor::context::{InitContext, Schedule, TaskStore};
use crate::processor::{Processor, SharedSerde, TaskId};

/// Builds one node into a [`Builder`].
pub(crate) type BuildFn = Box<dyn Fn(&mut Builder<'_>) -> Result<()> + Send + Sync>;

/// Supplies the raw store behind each store of a task (RocksDB in the task's directory, or
/// memory).
pub type RawStoreSupplier<'a> = dyn FnMut(TaskId, &str) -> Result<Box<dyn RawStore>> + 'a;

/// The nodes and stores of one task, as instantiated.
pub(crate) struct Instance {
    pub(crate) sources: BTreeMap<Arc<str>, Rc<RefCell<dyn Source>>>,
    pub(crate) lifecycles: BTreeMap<usize, Rc<RefCell<dyn Lifecycle>>>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) stores: BTreeMap<String, TaskStore>,
}

/// State while instantiating a task.
pub(crate) struct Builder<'a> {
    task: TaskId,
    topology: &'a Topology,
    index: usize,
    built: BTreeMap<usize, Box<dyn Any>>,
    instance: Instance,
}

impl Builder<'_> {
    /// The built children of the current node, as `(K, V)` nodes.
    fn children<K: 'static, V: 'static>(&self) -> Result<Vec<Child<K, V>>> {
        let node = &self.topology.nodes[self.index];
        node.children
            .iter()
            .map(|c| {
                self.built.get(c).and_then(|b| b.downcast_ref::<Child<K, V>>()).cloned().ok_or_else(|| {
                    Error::InvalidTopology(format!(
                        "bug: child '{}' of '{}' was not built with the types its parent forwards",
                        self.topology.nodes[*c].name, node.name
                    ))
                })
            })
            .collect()
    }

    pub(crate) fn source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: String,
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
    ) -> Result<()> {
        let children = self.children::<K, V>()?;
        let node: Rc<RefCell<dyn Source>> = Rc::new(RefCell::new(SourceNode { name, keys, values, children }));
        if let NodeKind::Source { topics } = &self.topology.nodes[self.index].kind {
            for t in topics {
                self.instance.sources.insert(t.as_str().into(), node.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn processor<KIn, VIn, KOut, VOut, P>(&mut self, name: String, processor: P) -> Result<()>
    where
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
        P: Processor<KIn, VIn, KOut, VOut>,
    {
        let children = self.children::<KOut, VOut>()?;
        let typed = Rc::new(RefCell::new(Typed::<P, KIn, VIn, KOut, VOut> {
            node: ProcessorNode { name, processor, children },
            _types: std::marker::PhantomData,
        }));
        {
            let mut t = typed.borrow_mut();
            let node = &mut t.node;
            let mut ctx = InitContext {
                node: &node.name,
                node_index: self.index,
                task: self.task,
                connected: &self.topology.nodes[self.index].stores,
                stores: &self.instance.stores,
                schedules: &mut self.instance.schedules,
            };
            node.processor.init(&mut ctx)?;
        }
        let as_child: Child<KIn, VIn> = typed.clone();
        let as_lifecycle: Rc<RefCell<dyn Lifecycle>> = typed;
        self.built.insert(self.index, Box::new(as_child));
        self.instance.lifecycles.insert(self.index, as_lifecycle);
        Ok(())
    }

    pub(crate) fn sink<K: 'static, V: 'static>(
        &mut self,
        name: String,
        fixed: Option<String>,
        extractor: TopicExtractor<K, V>,
        keys: SharedSerde<K>,
        values: SharedSerde<V>,
    ) -> Result<()> {
        let topic = match fixed {
            Some(t) => TopicChoice::Fixed(t.into()),
            None => TopicChoice::PerRecord(extractor),
        };
        let node: Child<K, V> = Rc::new(RefCell::new(SinkNode { name, topic, keys, values }));
        self.built.insert(self.index, Box::new(node));
        Ok(())
    }
}

impl Topology {
    /// Instantiates sub-topology `task.subtopology` for `task`: its stores over raw stores from
    /// `raw`, then its nodes, then each processor's `init`.
    pub(crate) fn instantiate(&self, task: TaskId, raw: &mut RawStoreSupplier<'_>) -> Result<Instance> {
        let subs = self.subtopology_of_nodes();
        let mut stores = BTreeMap::new();
        for store in self.stores_of(task.subtopology) {
            let raw_store = raw(task, store.name())?;
            stores.insert(store.name().to_string(), store.build(raw_store)?);
        }
        let mut b = Builder {
            task,
            topology: self,
            index: 0,
            built: BTreeMap::new(),
            instance: Instance { sources: BTreeMap::new(), lifecycles: BTreeMap::new(), schedules: Vec::new(), stores },
        };
        // Nodes are added parents first, so building in reverse builds children first.
        for i in (0..self.nodes.len()).rev() {
            if subs[i] != task.subtopology {
                continue;
            }
            b.index = i;
            (self.nodes[i].build)(&mut b)?;
        }
        Ok(b.instance)
    }
}
