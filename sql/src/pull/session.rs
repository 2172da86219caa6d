//! The DataFusion session a pull query's table scan is planned and run in: default
//! configuration and runtime, no catalogs of its own (the SQL planner resolves tables from
//! Moldau's catalog), built once per process.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion_catalog::{CatalogProviderList, MemoryCatalogProviderList, Session};
use datafusion_common::config::TableOptions;
use datafusion_common::{DFSchema, DataFusionError};
use datafusion_execution::config::SessionConfig;
use datafusion_execution::runtime_env::RuntimeEnv;
use datafusion_execution::TaskContext;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::registry::{ExtensionTypeRegistryRef, MemoryExtensionTypeRegistry};
use datafusion_expr::{AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion_physical_plan::ExecutionPlan;

/// A session for table scans.
#[derive(Debug)]
pub(crate) struct PullSession {
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    props: ExecutionProps,
    table_options: TableOptions,
    catalogs: Arc<MemoryCatalogProviderList>,
    scalar: HashMap<String, Arc<ScalarUDF>>,
    higher_order: HashMap<String, Arc<HigherOrderUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    window: HashMap<String, Arc<WindowUDF>>,
    types: ExtensionTypeRegistryRef,
    task: OnceLock<Arc<TaskContext>>,
}

impl PullSession {
    /// The process's session.
    pub(crate) fn get() -> &'static PullSession {
        static SESSION: OnceLock<PullSession> = OnceLock::new();
        SESSION.get_or_init(|| PullSession {
            config: SessionConfig::new(),
            runtime: Arc::new(RuntimeEnv::default()),
            props: ExecutionProps::new(),
            table_options: TableOptions::default(),
            catalogs: Arc::new(MemoryCatalogProviderList::new()),
            scalar: HashMap::new(),
            higher_order: HashMap::new(),
            aggregate: HashMap::new(),
            window: HashMap::new(),
            types: Arc::new(MemoryExtensionTypeRegistry::default()),
            task: OnceLock::new(),
        })
    }
}

#[async_trait]
impl Session for PullSession {
    fn session_id(&self) -> &str {
        "moldau-pull"
    }

    fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn catalog_list(&self) -> Arc<dyn CatalogProviderList> {
        self.catalogs.clone()
    }

    /// Pull queries run their plans themselves (see `pull::run`); only table scans are made
    /// in this session.
    async fn create_physical_plan(&self, plan: &LogicalPlan) -> datafusion_common::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::NotImplemented(format!("physical planning in a pull query's session: {}", plan.display())))
    }

    fn create_physical_expr(&self, expr: Expr, schema: &DFSchema) -> datafusion_common::Result<Arc<dyn PhysicalExpr>> {
        create_physical_expr(&expr, schema, &self.props, &PhysicalPlanningContext::default())
    }

    fn scalar_functions(&self) -> &HashMap<String, Arc<ScalarUDF>> {
        &self.scalar
    }

    fn higher_order_functions(&self) -> &HashMap<String, Arc<HigherOrderUDF>> {
        &self.higher_order
    }

    fn aggregate_functions(&self) -> &HashMap<String, Arc<AggregateUDF>> {
        &self.aggregate
    }

    fn window_functions(&self) -> &HashMap<String, Arc<WindowUDF>> {
        &self.window
    }

    fn extension_type_registry(&self) -> &ExtensionTypeRegistryRef {
        &self.types
    }

    fn runtime_env(&self) -> &Arc<RuntimeEnv> {
        &self.runtime
    }

    fn execution_props(&self) -> &ExecutionProps {
        &self.props
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_options(&self) -> &TableOptions {
        &self.table_options
    }

    fn table_options_mut(&mut self) -> &mut TableOptions {
        &mut self.table_options
    }

    fn task_ctx(&self) -> Arc<TaskContext> {
        Arc::clone(self.task.get_or_init(|| Arc::new(TaskContext::from(self as &dyn Session))))
    }
}
