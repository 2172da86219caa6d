//! Store builders: how a task creates each store of its sub-topology over a raw store the
//! runtime supplies (RocksDB in a task directory, or memory).

use std::sync::Arc;

use moldau_state_store::{
    KeyValueStore, RawStore, Serde, SessionSpec, SessionStore, StoreOptions, WindowSpec, WindowStore,
};

use crate::error::Result;
use crate::processor::context::TaskStore;

type Factory = Arc<dyn Fn(Box<dyn RawStore>, StoreOptions) -> Result<TaskStore> + Send + Sync>;

/// Which kind of store, for descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A key-value store.
    KeyValue,
    /// A window store.
    Window(WindowSpec),
    /// A session store.
    Session(SessionSpec),
}

/// Describes a store; the topology creates one per task.
#[derive(Clone)]
pub struct StoreBuilder {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) options: StoreOptions,
    pub(crate) factory: Factory,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("options", &self.options)
            .finish()
    }
}

impl StoreBuilder {
    /// A key-value store `name` of `K` to `V`, changelogged, without cache.
    pub fn key_value<K: 'static, V: 'static>(
        name: impl Into<String>,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
    ) -> Self {
        let (k, v): (Arc<dyn Serde<K>>, Arc<dyn Serde<V>>) = (Arc::new(keys), Arc::new(values));
        let factory: Factory = Arc::new(move |raw, options| {
            let store = KeyValueStore::new(raw, Box::new(k.clone()), Box::new(v.clone()), options);
            Ok(TaskStore::new(store))
        });
        StoreBuilder { name: name.into(), kind: StoreKind::KeyValue, options: StoreOptions::default(), factory }
    }

    /// A window store `name`.
    pub fn window<K: 'static, V: 'static>(
        name: impl Into<String>,
        spec: WindowSpec,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
    ) -> Self {
        let (k, v): (Arc<dyn Serde<K>>, Arc<dyn Serde<V>>) = (Arc::new(keys), Arc::new(values));
        let factory: Factory = Arc::new(move |raw, options| {
            let store = WindowStore::new(raw, Box::new(k.clone()), Box::new(v.clone()), spec, options)?;
            Ok(TaskStore::new(store))
        });
        StoreBuilder { name: name.into(), kind: StoreKind::Window(spec), options: StoreOptions::default(), factory }
    }

    /// A session store `name`.
    pub fn session<K: 'static, V: 'static>(
        name: impl Into<String>,
        spec: SessionSpec,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
    ) -> Self {
        let (k, v): (Arc<dyn Serde<K>>, Arc<dyn Serde<V>>) = (Arc::new(keys), Arc::new(values));
        let factory: Factory = Arc::new(move |raw, options| {
            let store = SessionStore::new(raw, Box::new(k.clone()), Box::new(v.clone()), spec, options)?;
            Ok(TaskStore::new(store))
        });
        StoreBuilder { name: name.into(), kind: StoreKind::Session(spec), options: StoreOptions::default(), factory }
    }

    /// With these options (cache, logging, changes).
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the store is backed by a changelog topic.
    pub fn logged(&self) -> bool {
        self.options.logging
    }

    pub(crate) fn build(&self, raw: Box<dyn RawStore>) -> Result<TaskStore> {
        (self.factory)(raw, self.options)
    }
}
