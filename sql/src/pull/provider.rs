//! A materialized table as DataFusion reads it: a [`TableProvider`] over the store views of the
//! persistent query that materializes it (committed state only; see `KafkaStreams::store`).
//!
//! Filters are pushed down exactly: the scan turns the conjuncts on the key into point lookups
//! and key ranges ([`super::lookup`]) and evaluates every filter over the rows it finds, so
//! DataFusion takes them out of the plan above the scan and hands the scan the query's LIMIT
//! too. The scan reads each store view (one partition of the plan per view) a chunk of groups
//! at a time, and stops once it has as many rows as the limit.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_catalog::{Session, TableProvider};
use datafusion_common::arrow::array::{new_empty_array, ArrayRef, Int64Array, RecordBatch};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::{DFSchema, DataFusionError};
use datafusion_execution::{SendableRecordBatchStream, TaskContext};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::expr_rewriter::unnormalize_cols;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::conjunction;
use datafusion_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion_physical_expr::{create_physical_expr, EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion_physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion_physical_plan::stream::RecordBatchStreamAdapter;
use datafusion_physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use moldau_engine::state::StoreReader;

use super::lookup::{as_slices, lookup, lookup_composite, Lookup};
use crate::aggregate::AggregatePlan;
use crate::catalog::SourceDef;
use crate::error::{Result, SqlError};
use crate::eval::filter_rows;
use crate::statement::WindowKind;

/// How many stored groups are made into rows at once.
const CHUNK: usize = 1024;

/// What a scan of the table reads from.
#[derive(Debug)]
struct Table {
    def: SourceDef,
    agg: Arc<AggregatePlan>,
    /// The store views to read, with their partitions.
    stores: Vec<(i32, StoreReader)>,
    /// The table as queries see it (see [`super::table_schema`]).
    schema: SchemaRef,
    /// The same, unqualified, as the scan's filter is planned against.
    df_schema: DFSchema,
}

/// A table materialized by a running aggregation, read from its store views.
#[derive(Debug)]
pub(crate) struct MaterializedTable {
    table: Arc<Table>,
}

impl MaterializedTable {
    /// The table `def`, materialized by `agg`, read from `stores`.
    pub(crate) fn new(def: SourceDef, agg: Arc<AggregatePlan>, stores: Vec<(i32, StoreReader)>) -> Self {
        let schema = super::table_schema(&def, agg.windowed());
        // Fails only on duplicate column names, which the catalog refuses.
        let df_schema = DFSchema::try_from(Arc::clone(&schema)).unwrap_or_else(|_| DFSchema::empty());
        MaterializedTable { table: Arc::new(Table { def, agg, stores, schema, df_schema }) }
    }

    /// `filters` (without qualifiers) as one expression over the table's columns, as the scan
    /// evaluates it.
    fn physical(&self, filters: &[Expr]) -> datafusion_common::Result<Option<Arc<dyn PhysicalExpr>>> {
        let Some(filter) = conjunction(filters.iter().cloned()) else { return Ok(None) };
        create_physical_expr(
            &filter,
            &self.table.df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .map(Some)
    }

    /// The groups `filters` lets the scan read (without qualifiers).
    fn lookup(&self, filters: &[Expr]) -> Result<Lookup> {
        let def = &self.table.def;
        let keys = def.key_columns();
        let filter = conjunction(filters.iter().cloned());
        match (&filter, keys.as_slice()) {
            (_, []) => Err(SqlError::Semantic(format!("{} has no key column to look rows up by", def.name))),
            (Some(f), [key]) => lookup(f, key, def.key_format),
            (Some(f), keys) => lookup_composite(f, keys, def.key_format),
            (None, _) => Ok(Lookup::Scan),
        }
    }
}

#[async_trait]
impl TableProvider for MaterializedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.table.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Exact for every filter the scan can evaluate: any without a subquery or a parameter
    /// (the scan evaluates its filters over the table's rows alone).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion_common::Result<Vec<TableProviderFilterPushDown>> {
        filters
            .iter()
            .map(|f| {
                let outside = f.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                            | Expr::OuterReferenceColumn(..)
                            | Expr::Placeholder(_)
                    ))
                })?;
                Ok(if outside { TableProviderFilterPushDown::Unsupported } else { TableProviderFilterPushDown::Exact })
            })
            .collect()
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion_common::Result<Arc<dyn ExecutionPlan>> {
        let unqualified = unnormalize_cols(filters.iter().cloned());
        let lookup = self.lookup(&unqualified).map_err(to_datafusion)?;
        let filter = self.physical(&unqualified)?;
        let schema = match projection {
            Some(p) => Arc::new(self.table.schema.project(p)?),
            None => Arc::clone(&self.table.schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(self.table.stores.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(StoreScanExec {
            table: Arc::clone(&self.table),
            lookup,
            filter,
            projection: projection.cloned(),
            limit,
            schema,
            properties: Arc::new(properties),
        }))
    }
}

/// `e` as DataFusion carries it (given back by [`from_datafusion`]).
pub(crate) fn to_datafusion(e: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A DataFusion error as this crate's: one it carries is given back as it was.
pub(crate) fn from_datafusion(e: DataFusionError) -> SqlError {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<SqlError>() {
            Ok(e) => *e,
            Err(other) => SqlError::Execution(other.to_string()),
        },
        DataFusionError::Context(_, inner) => from_datafusion(*inner),
        other => SqlError::Execution(other.to_string()),
    }
}

/// The scan of a materialized table: the groups its lookup names, from each store view (one
/// partition per view), filtered and projected.
#[derive(Debug)]
struct StoreScanExec {
    table: Arc<Table>,
    lookup: Lookup,
    /// Every filter the scan was given, over the table's columns.
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Option<Vec<usize>>,
    /// Rows per partition at most.
    limit: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for StoreScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lookup = match &self.lookup {
            Lookup::Keys(k) => format!("{} keys", k.len()),
            Lookup::Range(..) => "key range".to_string(),
            Lookup::Scan => "scan".to_string(),
        };
        write!(f, "StoreScanExec: table={}, lookup={lookup}", self.table.def.name)?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        if let Some(n) = self.limit {
            write!(f, ", limit={n}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StoreScanExec {
    fn name(&self) -> &str {
        "StoreScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion_common::Result<TreeNodeRecursion>,
    ) -> datafusion_common::Result<TreeNodeRecursion> {
        match &self.filter {
            Some(filter) => f(filter),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion_common::Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("a store scan has no inputs".into()))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion_common::Result<SendableRecordBatchStream> {
        let (_, store) = self.table.stores.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!("partition {partition} of a scan of {} stores", self.table.stores.len()))
        })?;
        let mut rows = Rows { scan: self, batches: Vec::new(), count: 0 };
        read(store, &self.lookup, &self.table.agg, &mut rows).map_err(to_datafusion)?;
        let batches = rows.batches.into_iter().map(Ok);
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::iter(batches))))
    }

    fn fetch(&self) -> Option<usize> {
        self.limit
    }
}

/// A stored group: key bytes, window, state.
type Entry = (Vec<u8>, Option<(i64, i64)>, Vec<u8>);

/// The batches a scan made of one store view.
struct Rows<'a> {
    scan: &'a StoreScanExec,
    batches: Vec<RecordBatch>,
    count: usize,
}

impl Rows<'_> {
    fn full(&self) -> bool {
        self.scan.limit.is_some_and(|n| self.count >= n)
    }

    /// Makes rows of `entries` and keeps those the filter keeps, up to the limit.
    fn add(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() || self.full() {
            return Ok(());
        }
        let table = &self.scan.table;
        let stored: Vec<_> = entries.iter().map(|(k, w, s)| (k.as_slice(), *w, s.as_slice())).collect();
        let (out, kept) = table.agg.output_rows(&stored, table.def.key_format)?;
        // The table's columns from the output, the window bounds from the store.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.schema.fields().len());
        for f in table.schema.fields() {
            let column = match out.schema().index_of(f.name()) {
                Ok(i) => Arc::clone(out.column(i)),
                Err(_) => {
                    let pick = |start: bool| -> ArrayRef {
                        Arc::new(Int64Array::from_iter(
                            kept.iter().map(|&i| entries[i].1.map(|(s, e)| if start { s } else { e })),
                        ))
                    };
                    match f.name().as_str() {
                        "windowstart" => pick(true),
                        "windowend" => pick(false),
                        _ => new_empty_array(f.data_type()),
                    }
                }
            };
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::clone(&table.schema), columns)
            .map_err(|e| SqlError::Execution(format!("pull query over {}: {e}", table.def.name)))?;
        let batch = match &self.scan.filter {
            Some(f) => filter_rows(f, &batch, "WHERE")?.0,
            None => batch,
        };
        let batch = match &self.scan.projection {
            Some(p) => {
                batch.project(p).map_err(|e| SqlError::Execution(format!("projecting {}: {e}", table.def.name)))?
            }
            None => batch,
        };
        let room = self.scan.limit.map_or(batch.num_rows(), |n| n.saturating_sub(self.count));
        let batch = batch.slice(0, batch.num_rows().min(room));
        if batch.num_rows() > 0 {
            self.count += batch.num_rows();
            self.batches.push(batch);
        }
        Ok(())
    }
}

/// A time as a window store writes it (sign bit flipped, big-endian: byte order is time
/// order).
fn stored_time(b: &[u8]) -> i64 {
    let b: [u8; 8] = b.try_into().unwrap_or([0x80, 0, 0, 0, 0, 0, 0, 0]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Reads the groups `lookup` names from `store`, a chunk at a time, until `rows` is full.
fn read(store: &StoreReader, lookup: &Lookup, agg: &AggregatePlan, rows: &mut Rows<'_>) -> Result<()> {
    let closed = |e: moldau_engine::state::Error| match e {
        moldau_engine::state::Error::Closed { .. } => SqlError::Execution(
            "the table's state moved while it was read (a rebalance or a restart); ask again".into(),
        ),
        other => SqlError::Execution(format!("reading the table's state: {other}")),
    };
    let window = agg.window_kind();
    // Splits a window store's key into the group and its window.
    let split = |k: &[u8]| -> Option<(Vec<u8>, (i64, i64))> {
        match window? {
            WindowKind::Session { .. } => {
                let n = k.len().checked_sub(16)?;
                let (end, start) = (stored_time(&k[n..n + 8]), stored_time(&k[n + 8..]));
                Some((k[..n].to_vec(), (start, end)))
            }
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let n = k.len().checked_sub(8)?;
                let start = stored_time(&k[n..]);
                let size = i64::try_from(size.as_millis()).unwrap_or(i64::MAX);
                Some((k[..n].to_vec(), (start, start.saturating_add(size))))
            }
        }
    };
    let mut chunk: Vec<Entry> = Vec::with_capacity(CHUNK);
    let mut failed = None;
    let mut visit = |k: &[u8], v: &[u8], want: Option<&[u8]>| -> bool {
        let entry = if window.is_some() {
            match split(k) {
                Some((group, w)) if want.is_none_or(|g| g == group.as_slice()) => (group, Some(w), v.to_vec()),
                _ => return true,
            }
        } else {
            (k.to_vec(), None, v.to_vec())
        };
        chunk.push(entry);
        if chunk.len() >= CHUNK {
            if let Err(e) = rows.add(&chunk) {
                failed = Some(e);
                return false;
            }
            chunk.clear();
        }
        !rows.full()
    };
    match (lookup, window.is_some()) {
        (Lookup::Keys(keys), false) => {
            for k in keys {
                if let Some(v) = store.get(k).map_err(closed)? {
                    if !visit(k, &v, None) {
                        break;
                    }
                }
            }
        }
        (Lookup::Keys(keys), true) => {
            for k in keys {
                store.scan_segments(k, &mut |sk, v| visit(sk, v, Some(k))).map_err(closed)?;
            }
        }
        (Lookup::Range(lo, hi), false) => {
            store.scan(as_slices(lo), as_slices(hi), &mut |k, v| visit(k, v, None)).map_err(closed)?;
        }
        (Lookup::Range(..) | Lookup::Scan, true) => {
            store.scan_segments(&[], &mut |k, v| visit(k, v, None)).map_err(closed)?;
        }
        (Lookup::Scan, false) => {
            store.scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| visit(k, v, None)).map_err(closed)?;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    rows.add(&chunk)
}
