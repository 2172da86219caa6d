//! Pull queries: `SELECT … FROM table [WHERE …] [LIMIT n]` answered from the live state store
//! of the persistent query that materializes the table, read through the engine's read-only
//! store views (committed state only; see `KafkaStreams::store`).
//!
//! The query is planned by DataFusion against the table as its store holds it (its columns,
//! and WINDOWSTART / WINDOWEND when windowed), through a DataFusion `TableProvider`
//! ([`MaterializedTable`]): DataFusion's filter pushdown hands it the WHERE clause, whose
//! conjuncts on the key column become point lookups (a key prefix per window segment in a
//! windowed store) or a key range, and anything else a full scan; the scan evaluates the
//! whole clause over the rows it finds, so a lookup only narrows what is read, never what is
//! answered, and takes the LIMIT. Rows are made, filtered and projected a batch at a time.

use std::sync::Arc;
use std::time::Duration;

use datafusion_catalog::{Session, TableProvider};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::logical_plan::{Projection, TableScan};
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_physical_expr::create_physical_expr;
use datafusion_physical_plan::{displayable, ExecutionPlan};
use futures::StreamExt;

use crate::catalog::SourceDef;
use crate::error::{Result, SqlError};
use crate::eval::{filter_rows, project, Stateless};
use crate::push::Row;
use crate::statement::Column;

mod lookup;
mod provider;
mod session;

use provider::from_datafusion;
pub(crate) use provider::MaterializedTable;
use session::PullSession;

/// The store a CTAS aggregation keeps its groups in.
pub const STORE: &str = "Aggregate-Materialize";

/// What a pull query answers: its columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PullResult {
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, one JSON value per column.
    pub rows: Vec<Row>,
    /// The partitions other servers host, still to ask them for (see [`Self::gather`]).
    pub(crate) remote: Vec<RemotePart>,
    /// The query's text (asked of the other servers) and its LIMIT.
    pub(crate) sql: String,
    pub(crate) limit: Option<usize>,
}

/// Partitions of a table another server of the fleet hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemotePart {
    /// Its URL (its `application.server`).
    pub(crate) server: String,
    /// The partitions to ask it for.
    pub(crate) partitions: Vec<i32>,
}

/// The request property that restricts a forwarded pull query to the partitions it names
/// (comma-separated), which the server asked must host.
pub const PARTITIONS_PROPERTY: &str = "request.moldau.pull.partitions";

/// How long a server waits for another's part of a pull query.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl PullResult {
    /// Asks the other servers for the partitions they host (`PARTITIONS_PROPERTY`), adds their
    /// rows to this server's, and applies the LIMIT to the whole. Call it without holding the
    /// executor: another server's answer may need to reach it.
    pub fn gather(mut self) -> Result<PullResult> {
        for part in std::mem::take(&mut self.remote) {
            if self.limit.is_some_and(|n| self.rows.len() >= n) {
                break;
            }
            let rows = ask(&part, &self.sql)?;
            self.rows.extend(rows);
        }
        if let Some(n) = self.limit {
            self.rows.truncate(n);
        }
        Ok(self)
    }
}

/// The rows `part.server` answers for `part.partitions`.
fn ask(part: &RemotePart, sql: &str) -> Result<Vec<Row>> {
    use crate::client::{Client, Line};
    let fail = |e: String| {
        SqlError::Execution(format!("asking {} for partitions {:?} of the table: {e}", part.server, part.partitions))
    };
    let partitions = part.partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let properties = serde_json::json!({ PARTITIONS_PROPERTY: partitions });
    let mut answer = Client::new(&part.server)?.query(sql, &properties).map_err(|e| fail(e.to_string()))?;
    let status = answer.status();
    // Waited in slices, so that the wait is bounded without reading a clock.
    const SLICE: Duration = Duration::from_millis(100);
    let mut slices = FORWARD_TIMEOUT.as_millis() / SLICE.as_millis();
    let mut lines = Vec::new();
    loop {
        match answer.next(SLICE).map_err(|e| fail(e.to_string()))? {
            Line::Value(v) => lines.push(v),
            Line::Pending if slices == 0 => {
                answer.cancel();
                return Err(fail(format!("no whole answer within {FORWARD_TIMEOUT:?}")));
            }
            Line::Pending => slices -= 1,
            Line::End => break,
        }
    }
    if status != 200 {
        let message = lines.first().and_then(|v| v.get("message")).and_then(|m| m.as_str()).unwrap_or("no message");
        return Err(fail(format!("status {status}: {message}")));
    }
    // The first line names the columns; each other one is a row.
    lines
        .into_iter()
        .skip(1)
        .map(|v| match v {
            serde_json::Value::Array(row) => Ok(row),
            other => Err(fail(format!("a row that is not an array: {other}"))),
        })
        .collect()
}

/// The schema a pull query sees a materialized table with: its columns, then WINDOWSTART and
/// WINDOWEND when windowed and not among them.
pub fn table_schema(def: &SourceDef, windowed: bool) -> SchemaRef {
    let mut fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect();
    if windowed {
        for w in crate::planner::WINDOW_COLUMNS {
            if !def.columns.iter().any(|c| c.name == w) {
                fields.push(Field::new(w, DataType::Int64, true));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// A planned pull query's parts, top down.
struct Shape<'a> {
    projection: &'a Projection,
    /// The LIMIT.
    limit: Option<usize>,
    /// What DataFusion kept above the scan of the WHERE clause (the filters the scan does not
    /// take).
    residual: Option<&'a Expr>,
    /// The node the projection reads (the scan, or an alias of it).
    node: &'a LogicalPlan,
    scan: &'a TableScan,
}

/// The parts of the planned pull query `plan`: LIMIT, projection, filter and the table scan.
fn shape(plan: &LogicalPlan) -> Result<Shape<'_>> {
    let (input, mut limit) = crate::planner::take_limit(plan, "in a pull query")?;
    let LogicalPlan::Projection(p) = input else {
        return Err(SqlError::Unsupported(format!(
            "a pull query of this shape (filters, projections and LIMIT are supported): {}",
            input.display()
        )));
    };
    let mut node = p.input.as_ref();
    // DataFusion's limit pushdown copies the LIMIT below the projection too.
    while let LogicalPlan::Limit(_) = node {
        let (under, fetch) = crate::planner::take_limit(node, "in a pull query")?;
        limit = match (limit, fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        node = under;
    }
    let mut residual = None;
    if let LogicalPlan::Filter(f) = node {
        residual = Some(&f.predicate);
        node = f.input.as_ref();
    }
    let scan = match node {
        LogicalPlan::TableScan(s) => s,
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(s) => s,
            other => return Err(SqlError::Unsupported(format!("{} in a pull query", other.display()))),
        },
        other => return Err(SqlError::Unsupported(format!("{} in a pull query", other.display()))),
    };
    Ok(Shape { projection: p, limit, residual, node, scan })
}

/// The table scan DataFusion has `table` make for the planned pull query `plan` (EXPLAIN).
pub(crate) fn describe_scan(plan: &LogicalPlan, table: &MaterializedTable) -> Result<String> {
    let exec = scan_exec(shape(plan)?.scan, table)?;
    let text = displayable(exec.as_ref()).indent(true).to_string();
    Ok(text)
}

/// The execution plan of `table`'s scan as the planned `scan` node asks for it (its
/// projection, the filters pushed into it and its limit).
fn scan_exec(scan: &TableScan, table: &MaterializedTable) -> Result<Arc<dyn ExecutionPlan>> {
    let args = (scan.projection.as_ref(), scan.filters.as_slice(), scan.fetch);
    futures::executor::block_on(table.scan(PullSession::get(), args.0, args.1, args.2)).map_err(from_datafusion)
}

/// Runs the planned pull query `plan`, whose table is `table` (the provider the planner was
/// given): DataFusion's scan of it ([`MaterializedTable`]), then the projection, and any
/// filter the scan could not take, a batch at a time, up to the LIMIT.
pub(crate) fn run(plan: &LogicalPlan, table: &MaterializedTable) -> Result<PullResult> {
    let Shape { projection: p, limit, residual, node, scan } = shape(plan)?;
    let session = PullSession::get();
    let exec = scan_exec(scan, table)?;
    // The projection and the filter left above the scan, over what the scan yields.
    let node_schema: &DFSchema = node.schema();
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    let physical =
        |e: &Expr| create_physical_expr(e, node_schema, &props, &ctx).map_err(|e| SqlError::Semantic(e.to_string()));
    let residual = residual.map(physical).transpose()?;
    let projection = p.expr.iter().map(physical).collect::<Result<Vec<_>>>()?;
    let out_schema = Arc::new(Schema::new(
        p.schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    let columns = crate::planner::answer_columns(&out_schema)?;
    let mut rows: Vec<Row> = Vec::new();
    let full = |rows: &Vec<Row>| limit.is_some_and(|n| rows.len() >= n);
    'partitions: for partition in 0..exec.properties().partitioning.partition_count() {
        let mut batches = exec.execute(partition, session.task_ctx()).map_err(from_datafusion)?;
        while let Some(batch) = futures::executor::block_on(batches.next()) {
            let batch = batch.map_err(from_datafusion)?;
            let batch = match &residual {
                Some(f) => filter_rows(f, &batch, "WHERE")?.0,
                None => batch,
            };
            let out = project(&projection, &batch, &out_schema)?;
            let room = limit.map_or(out.num_rows(), |n| n.saturating_sub(rows.len()));
            let out = out.slice(0, out.num_rows().min(room));
            for row in Stateless::encode_json(&out)? {
                let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&row)
                    .map_err(|e| SqlError::Execution(format!("a row of the pull query: {e}")))?;
                rows.push(
                    out_schema
                        .fields()
                        .iter()
                        .map(|f| v.get(f.name()).cloned().unwrap_or(serde_json::Value::Null))
                        .collect(),
                );
            }
            if full(&rows) {
                break 'partitions;
            }
        }
    }
    Ok(PullResult { columns, rows, remote: Vec::new(), sql: String::new(), limit })
}
