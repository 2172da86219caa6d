//! Stream–table joins (`FROM s [LEFT] JOIN t ON <expr over s> = t.<primary key>`): each stream
//! record looks its join key up in the table's store (the DSL's stream–table join, so a table
//! update emits nothing and the two topics are read partition by partition). A join on the
//! stream's own key reads the stream as it is and needs the topics co-partitioned; a join on
//! any other expression first rekeys the stream (evaluated a batch at a time) and
//! repartitions it, the repartition topic taking the table's partition count. The joined rows
//! are decoded, filtered and projected a batch at a time with DataFusion's physical
//! expressions, like a stateless query's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::logical_plan::{Join, JoinType};
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use moldau_dsl::state::BytesSerde;
use moldau_dsl::{Consumed, Grouped, KStream, Produced, StreamsBuilder};
use moldau_engine::{Processor, ProcessorContext, Record, Topology};

use crate::catalog::{Catalog, Format, SourceDef};
use crate::error::{Result, SqlError};
use crate::eval::{filter_rows, good_rows, held_record, project, reject_bad, rowtime, Decoder, InputRecord};
use crate::query::{Sink, BATCH};
use crate::statement::{Column, SourceKind};
use crate::types::SqlType;

/// The name of the store holding the joined table's rows.
pub const TABLE_STORE: &str = "Join-Table";
/// The name of the repartition of a rekeyed stream (topic `<app>-Join-Left-repartition`).
pub const REKEY: &str = "Join-Left";

/// A compiled stream–table join.
#[derive(Debug)]
pub struct JoinPlan {
    stream: SourceDef,
    table: SourceDef,
    /// `LEFT JOIN`: stream records without a table row join with nulls.
    left: bool,
    /// The stream's join expression (cast to the table key's type), when it is not the
    /// stream's key: the stream is rekeyed by it and repartitioned.
    rekey: Option<Arc<dyn PhysicalExpr>>,
    stream_schema: SchemaRef,
    table_schema: SchemaRef,
    joined_schema: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    output_schema: SchemaRef,
    /// Output columns written to the value (all but the key column).
    value_columns: Vec<usize>,
    /// The output's columns, the key column first.
    columns: Vec<Column>,
    /// The stream's join expression, for messages.
    on: String,
}

/// The stream or table a join input scans.
fn scanned(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::TableScan(s) => Some(s.table_name.table().to_string()),
        LogicalPlan::SubqueryAlias(a) => scanned(&a.input),
        _ => None,
    }
}

/// Whether `plan` holds a join.
pub fn has_join(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = datafusion_common::tree_node::TreeNode::apply(plan, |p| {
        found |= matches!(p, LogicalPlan::Join(_));
        Ok(datafusion_common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// The column `e` is, through aliases.
fn column_of(e: &Expr) -> Option<&datafusion_common::Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// `e` without the casts DataFusion's type coercion put around it.
fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// Whether `e` uses columns, all of them from `schema`.
fn over(e: &Expr, schema: &DFSchema) -> bool {
    let refs = e.column_refs();
    !refs.is_empty() && refs.iter().all(|c| schema.has_column(c))
}

impl JoinPlan {
    /// Compiles a planned `SELECT … FROM stream [LEFT] JOIN table ON … [WHERE …]`.
    pub fn compile(plan: &LogicalPlan, catalog: &Catalog) -> Result<Self> {
        let LogicalPlan::Projection(p) = plan else {
            return Err(SqlError::Unsupported(format!("a join query of this shape: {}", plan.display())));
        };
        let mut input = p.input.as_ref();
        let mut filter = None;
        if let LogicalPlan::Filter(f) = input {
            filter = Some(f.predicate.clone());
            input = f.input.as_ref();
        }
        let LogicalPlan::Join(join) = input else {
            return Err(SqlError::Unsupported(format!("{} in a join query", input.display())));
        };
        let left = match join.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            other => {
                return Err(SqlError::Unsupported(format!(
                    "{other} JOIN of a stream and a table (JOIN and LEFT JOIN are supported)"
                )))
            }
        };
        let source = |side: &LogicalPlan| -> Result<SourceDef> {
            let name = scanned(side)
                .ok_or_else(|| SqlError::Unsupported("joins of more than two sources, or of a subquery".into()))?;
            catalog.get(&name).cloned().ok_or_else(|| SqlError::Semantic(format!("no stream or table named {name}")))
        };
        let (stream, table) = (source(&join.left)?, source(&join.right)?);
        match (stream.kind, table.kind) {
            (SourceKind::Stream, SourceKind::Table) => {}
            (SourceKind::Table, SourceKind::Stream) => {
                return Err(SqlError::Semantic(format!(
                    "a stream–table join names the stream first: FROM {} JOIN {}",
                    table.name, stream.name
                )))
            }
            (SourceKind::Stream, SourceKind::Stream) => {
                return Err(SqlError::Unsupported(format!(
                    "stream–stream joins ({} and {}); join a stream with a table",
                    stream.name, table.name
                )))
            }
            (SourceKind::Table, SourceKind::Table) => {
                return Err(SqlError::Unsupported(format!(
                    "table–table joins ({} and {}); join a stream with a table",
                    stream.name, table.name
                )))
            }
        }
        let (left_df, right_df) = (join.left.schema().as_ref(), join.right.schema().as_ref());
        let table_key = match table.key_columns().as_slice() {
            [one] => one.clone(),
            many => {
                return Err(SqlError::Unsupported(format!(
                    "joins with {}, whose PRIMARY KEY has {} columns ({}); a join is on one key column",
                    table.name,
                    many.len(),
                    many.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let on = Self::condition(join, left_df, right_df, &table, &table_key.name)?;
        let key_type = table_key.ty.arrow();
        let on_type = on.get_type(left_df).map_err(|e| SqlError::Semantic(e.to_string()))?;
        let on_stream_key = matches!(stream.key_columns().as_slice(), [k] if {
            column_of(&on).is_some_and(|c| c.name == k.name)
                && k.ty == table_key.ty
                && stream.key_format == table.key_format
        } );
        let props = ExecutionProps::new();
        let ctx = PhysicalPlanningContext::default();
        let physical = |e: &Expr, schema: &DFSchema| {
            create_physical_expr(e, schema, &props, &ctx).map_err(|e| SqlError::Semantic(e.to_string()))
        };
        let rekey = if on_stream_key {
            None
        } else {
            let cast = if on_type == key_type {
                on.clone()
            } else {
                on.clone()
                    .cast_to(&key_type, left_df)
                    .map_err(|e| SqlError::Semantic(format!("ON {on}: {e} (the table's key is {})", table_key.ty)))?
            };
            Some(physical(&cast, left_df)?)
        };
        let joined_df = join.schema.as_ref();
        let filter = filter.as_ref().map(|f| physical(f, joined_df)).transpose()?;
        let projection = p.expr.iter().map(|e| physical(e, joined_df)).collect::<Result<Vec<_>>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for f in p.schema.fields() {
            if !seen.insert(f.name().as_str()) {
                return Err(SqlError::Semantic(format!(
                    "the join's output has two columns named {}; name one of them with AS",
                    f.name()
                )));
            }
        }
        let output_schema = Arc::new(Schema::new(
            p.schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
        ));
        // The output is keyed by the join key: its column is the first selected column that is
        // the stream's join column or the table's key.
        let mut key = None;
        let mut value_columns = Vec::new();
        let mut columns = Vec::new();
        let on_column = column_of(&on);
        for (i, (e, f)) in p.expr.iter().zip(output_schema.fields()).enumerate() {
            let ty = SqlType::from_arrow(f.data_type())
                .map_err(|err| SqlError::Unsupported(format!("column {}: {err}", f.name())))?;
            let is_join_key = column_of(e).is_some_and(|c| {
                (right_df.has_column(c) && c.name == table_key.name) || (left_df.has_column(c) && Some(c) == on_column)
            });
            if key.is_none() && is_join_key && ty == table_key.ty {
                key = Some(Column { name: f.name().clone(), ty, key: true });
            } else {
                value_columns.push(i);
                columns.push(Column { name: f.name().clone(), ty, key: false });
            }
        }
        if let Some(k) = key {
            columns.insert(0, k);
        }
        Ok(JoinPlan {
            stream_schema: Arc::new(left_df.as_arrow().clone()),
            table_schema: Arc::new(right_df.as_arrow().clone()),
            joined_schema: Arc::new(joined_df.as_arrow().clone()),
            stream,
            table,
            left,
            rekey,
            filter,
            projection,
            output_schema,
            value_columns,
            columns,
            on: on.to_string(),
        })
    }

    /// Checks the ON condition: one equality of an expression over the stream and the table's
    /// primary key; returns the stream's expression.
    fn condition(join: &Join, left: &DFSchema, right: &DFSchema, table: &SourceDef, key: &str) -> Result<Expr> {
        let wrong = |what: String| {
            SqlError::Semantic(format!(
                "{what}: a stream–table join looks each record up by the table's PRIMARY KEY; write \
                 ON <expression over the stream> = {}.{key}",
                table.name
            ))
        };
        if let Some(f) = &join.filter {
            if !join.on.is_empty() {
                return Err(wrong(format!("ON … AND {f}")));
            }
            let Expr::BinaryExpr(BinaryExpr { left: l, op: Operator::Eq, right: r }) = f else {
                return Err(wrong(format!("ON {f}")));
            };
            return Self::sides(l, r, left, right, key).ok_or_else(|| wrong(format!("ON {f}")));
        }
        match join.on.as_slice() {
            [(l, r)] => Self::sides(l, r, left, right, key).ok_or_else(|| wrong(format!("ON {l} = {r}"))),
            [] => Err(wrong("a join without ON".into())),
            _ => Err(wrong("more than one equality in ON".into())),
        }
    }

    /// The stream's side of `l = r` when the other side is the table's key.
    fn sides(l: &Expr, r: &Expr, left: &DFSchema, right: &DFSchema, key: &str) -> Option<Expr> {
        let table_key = |e: &Expr| {
            let e = strip_cast(e);
            column_of(e).is_some_and(|c| c.name == key) && over(e, right)
        };
        let stream_side = |e: &Expr| over(e, left);
        if table_key(r) && stream_side(l) {
            Some(strip_cast(l).clone())
        } else if table_key(l) && stream_side(r) {
            Some(strip_cast(r).clone())
        } else {
            None
        }
    }

    /// The stream it reads.
    pub fn stream(&self) -> &SourceDef {
        &self.stream
    }

    /// The table it joins.
    pub fn table(&self) -> &SourceDef {
        &self.table
    }

    /// Whether the stream is joined on its own key (no repartition; the topics must be
    /// co-partitioned).
    pub fn on_stream_key(&self) -> bool {
        self.rekey.is_none()
    }

    /// The output's columns, the key column first when one is selected.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The output schema (every column, in order).
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Writes every output column to the value (a push query's rows).
    pub fn all_columns_in_value(&mut self) {
        self.value_columns = (0..self.output_schema.fields().len()).collect();
    }

    /// A persistent join's output is keyed by the join key, so the query must select it.
    pub fn require_key(&self, sink: &str) -> Result<()> {
        if self.columns.first().is_some_and(|c| c.key) {
            return Ok(());
        }
        let key = self.table.columns.iter().find(|c| c.key).map_or("", |c| c.name.as_str());
        Err(SqlError::Semantic(format!(
            "{sink} is keyed by the join key, which the query does not select: add {} or {}.{key} to the SELECT",
            self.on, self.table.name
        )))
    }

    /// The query's topology: the table in a store, the stream (rekeyed and repartitioned if
    /// it is not joined on its key) looking rows up in it, the joined rows evaluated a batch
    /// at a time, written to `sink`. `skipped` counts the records left out as bad.
    pub fn topology(self: &Arc<Self>, sink: &Sink, skipped: Arc<AtomicU64>) -> Result<Topology> {
        let b = StreamsBuilder::new();
        let table = b.table(&self.table.topic, Consumed::with(BytesSerde, BytesSerde), TABLE_STORE);
        let consumed = || Consumed::with(BytesSerde, BytesSerde);
        let stream: KStream<Vec<u8>, Vec<u8>> = match &self.rekey {
            None => b.stream_keyed(&self.stream.topic, consumed()),
            Some(_) => {
                let (plan, skipped) = (Arc::clone(self), skipped.clone());
                b.stream(&self.stream.topic, consumed()).process(
                    move || Rekey {
                        plan: Arc::clone(&plan),
                        held: Vec::with_capacity(BATCH),
                        skipped: skipped.clone(),
                    },
                    &[],
                )
            }
        };
        let joined = Grouped::with(BytesSerde, BytesSerde).named(REKEY);
        let pairs = if self.left {
            stream.left_join(&table, |v, row| Pair { left: v.clone(), right: row.cloned() }, joined)
        } else {
            stream.join(&table, |v, row| Pair { left: v.clone(), right: Some(row.clone()) }, joined)
        };
        let plan = Arc::clone(self);
        let value_format = sink.value_format();
        let out = pairs.process(
            move || JoinEvaluate {
                plan: Arc::clone(&plan),
                held: Held::default(),
                skipped: skipped.clone(),
                value_format,
            },
            &[],
        );
        match sink {
            Sink::Topic(o) => out.to(&o.topic, Produced::nullable(BytesSerde, BytesSerde)),
            Sink::Rows(tx) => {
                let tx = tx.clone();
                out.for_each(move |_, v: &Option<Vec<u8>>| {
                    if let Some(v) = v {
                        let _ = tx.send(v.clone());
                    }
                })
            }
        }
        b.build().map_err(|e| SqlError::Semantic(format!("the query's topology: {e}")))
    }
}

/// A stream record and the table row it joined (`None`: no row, a left join).
#[derive(Debug, Clone)]
struct Pair {
    left: Vec<u8>,
    right: Option<Vec<u8>>,
}

/// A rekeyed stream value: the original key (it may be a selected column) and value, framed
/// as `[0]` (null key) or `[1][u32 BE length][key]`, then the value.
fn frame(key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + key.map_or(0, <[u8]>::len) + value.len());
    match key {
        None => out.push(0),
        Some(k) => {
            out.push(1);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
        }
    }
    out.extend_from_slice(value);
    out
}

/// The original key and value of a [`frame`]d value.
fn unframe(mut framed: Vec<u8>) -> std::result::Result<(Option<Vec<u8>>, Vec<u8>), String> {
    let bad = || "a rekeyed join record that is not framed as the join writes it".to_string();
    match framed.first() {
        Some(0) => {
            framed.remove(0);
            Ok((None, framed))
        }
        Some(1) if framed.len() >= 5 => {
            let n = u32::from_be_bytes(framed[1..5].try_into().expect("4 bytes")) as usize;
            if framed.len() < 5 + n {
                return Err(bad());
            }
            let value = framed.split_off(5 + n);
            Ok((Some(framed[5..].to_vec()), value))
        }
        _ => Err(bad()),
    }
}

fn fail(e: impl std::fmt::Display) -> moldau_engine::Error {
    moldau_engine::Error::processing("SQL-JOIN", e.to_string())
}

/// Rekeys the stream by the join expression, a batch at a time.
struct Rekey {
    plan: Arc<JoinPlan>,
    held: Vec<InputRecord>,
    skipped: Arc<AtomicU64>,
}

impl Rekey {
    fn run(&mut self, ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>) -> moldau_engine::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let plan = &self.plan;
        let decoder = Decoder { source: &plan.stream, input_schema: &plan.stream_schema };
        let (batch, bad) = decoder.decode(&self.held).map_err(fail)?;
        reject_bad(ctx, &plan.stream.topic, &self.held, &bad, &self.skipped)?;
        let good = good_rows(self.held.len(), &bad);
        let keys = plan
            .rekey
            .as_ref()
            .expect("a rekeying join")
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(fail)?;
        let rowtime = rowtime(&batch);
        for (row, &i) in good.iter().enumerate() {
            let r = &self.held[i];
            match crate::codec::encode_key(plan.table.key_format, &keys, row) {
                Ok(Some(key)) => {
                    let value = frame(r.key.as_deref(), r.value.as_deref().unwrap_or_default());
                    ctx.forward(Record::new(key, value, rowtime.value(row)))?;
                }
                Ok(None) => {
                    tracing::debug!(
                        partition = r.partition,
                        offset = r.offset,
                        "dropping a record whose join key is null"
                    );
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e,
                        "skipping a record whose join key cannot be a key");
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.held.clear();
        Ok(())
    }
}

impl Processor<Option<Vec<u8>>, Vec<u8>, Vec<u8>, Vec<u8>> for Rekey {
    fn process(
        &mut self,
        r: Record<Option<Vec<u8>>, Vec<u8>>,
        ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>,
    ) -> moldau_engine::Result<()> {
        self.held.push(held_record(r, ctx.record_metadata()));
        if self.held.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

/// Joined records held for the next batch.
#[derive(Default)]
struct Held {
    /// Join keys (the output keys).
    keys: Vec<Vec<u8>>,
    /// The stream records, with their original keys.
    lefts: Vec<InputRecord>,
    /// The table rows.
    rights: Vec<Option<Vec<u8>>>,
}

/// Evaluates joined records a batch at a time: decodes both sides into one batch of the
/// join's schema, filters, projects and encodes.
struct JoinEvaluate {
    plan: Arc<JoinPlan>,
    held: Held,
    skipped: Arc<AtomicU64>,
    /// The format of the values it writes.
    value_format: Format,
}

impl JoinEvaluate {
    fn run(&mut self, ctx: &mut ProcessorContext<'_, Option<Vec<u8>>, Option<Vec<u8>>>) -> moldau_engine::Result<()> {
        if self.held.lefts.is_empty() {
            return Ok(());
        }
        let plan = &self.plan;
        let Held { keys, lefts, rights } = &mut self.held;
        let (left_batch, bad) =
            Decoder { source: &plan.stream, input_schema: &plan.stream_schema }.decode(lefts).map_err(fail)?;
        // Joined on the stream's key, these are the stream's records as read; rekeyed, the
        // rekeying stage has already rejected the ones that do not decode.
        reject_bad(ctx, &plan.stream.topic, lefts, &bad, &self.skipped)?;
        let good = good_rows(lefts.len(), &bad);
        // The table rows of the good stream records, as records keyed by the join key.
        let mut right_records = Vec::with_capacity(good.len());
        let mut right_of = Vec::with_capacity(good.len());
        for &i in &good {
            match rights[i].take() {
                Some(value) => {
                    right_of.push(Some(right_records.len()));
                    let l = &lefts[i];
                    right_records.push(InputRecord {
                        key: Some(keys[i].clone()),
                        value: Some(value),
                        timestamp: l.timestamp,
                        partition: l.partition,
                        offset: l.offset,
                    });
                }
                None => right_of.push(None),
            }
        }
        let (right_batch, right_bad) =
            Decoder { source: &plan.table, input_schema: &plan.table_schema }.decode(&right_records).map_err(fail)?;
        for b in &right_bad {
            tracing::warn!(reason = %b.reason, "a table row that does not match the table's schema joins as no row");
        }
        // Row of each decoded table record in `right_batch`.
        let right_rows: Vec<Option<u32>> = {
            let mut bad = right_bad.iter().map(|b| b.index).peekable();
            let mut next = 0u32;
            (0..right_records.len())
                .map(|i| {
                    if bad.peek() == Some(&i) {
                        bad.next();
                        None
                    } else {
                        next += 1;
                        Some(next - 1)
                    }
                })
                .collect()
        };
        let mut left_take = Vec::with_capacity(good.len());
        let mut right_take = Vec::with_capacity(good.len());
        let mut source_of = Vec::with_capacity(good.len());
        for (row, &i) in good.iter().enumerate() {
            let right = right_of[row].and_then(|r| right_rows[r]);
            if right.is_none() && !plan.left {
                continue;
            }
            left_take.push(row as u32);
            right_take.push(right);
            source_of.push(i);
        }
        let left_take = UInt32Array::from(left_take);
        let right_take = UInt32Array::from(right_take);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.joined_schema.fields().len());
        for c in left_batch.columns() {
            columns.push(take(c.as_ref(), &left_take, None).map_err(fail)?);
        }
        for (c, f) in right_batch.columns().iter().zip(plan.table_schema.fields()) {
            columns.push(if right_batch.num_rows() == 0 {
                datafusion_common::arrow::array::new_null_array(f.data_type(), right_take.len())
            } else {
                take(c.as_ref(), &right_take, None).map_err(fail)?
            });
        }
        let joined = RecordBatch::try_new_with_options(
            Arc::clone(&plan.joined_schema),
            columns,
            &datafusion_common::arrow::array::RecordBatchOptions::new().with_row_count(Some(source_of.len())),
        )
        .map_err(fail)?;
        let times = rowtime(&joined).clone();
        let (joined, rows) = match &plan.filter {
            Some(f) => filter_rows(f, &joined, "WHERE").map_err(fail)?,
            None => {
                let n = joined.num_rows();
                (joined, (0..n).collect())
            }
        };
        let out = project(&plan.projection, &joined, &plan.output_schema).map_err(fail)?;
        let values = out.project(&plan.value_columns).map_err(fail)?;
        let encoded = crate::values::encode(self.value_format, &values).map_err(fail)?;
        for (value, row) in encoded.into_iter().zip(rows) {
            let key = std::mem::take(&mut keys[source_of[row]]);
            ctx.forward(Record::new(Some(key), value, times.value(row)))?;
        }
        keys.clear();
        lefts.clear();
        rights.clear();
        Ok(())
    }
}

impl Processor<Vec<u8>, Pair, Option<Vec<u8>>, Option<Vec<u8>>> for JoinEvaluate {
    fn process(
        &mut self,
        r: Record<Vec<u8>, Pair>,
        ctx: &mut ProcessorContext<'_, Option<Vec<u8>>, Option<Vec<u8>>>,
    ) -> moldau_engine::Result<()> {
        let (partition, offset) = ctx.record_metadata().map_or((-1, -1), |m| (m.partition, m.offset));
        let Record { key, value: Pair { left, right }, timestamp, .. } = r;
        let (original, value) = if self.plan.rekey.is_some() {
            match unframe(left) {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(partition, offset, error = %e, "skipping a joined record");
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        } else {
            (Some(key.clone()), left)
        };
        self.held.lefts.push(InputRecord { key: original, value: Some(value), timestamp, partition, offset });
        self.held.keys.push(key);
        self.held.rights.push(right);
        if self.held.lefts.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Option<Vec<u8>>, Option<Vec<u8>>>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Planner;
    use crate::statement::{parse, Statement};

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        for sql in [
            "CREATE STREAM clicks (userid STRING KEY, page STRING, n BIGINT) WITH (kafka_topic='c', value_format='JSON')",
            "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='u', value_format='JSON')",
            "CREATE TABLE counts (n BIGINT PRIMARY KEY, name STRING) WITH (kafka_topic='n', value_format='JSON')",
        ] {
            let Statement::CreateSource(s) = parse(sql).unwrap().remove(0).statement else { panic!() };
            c.add(SourceDef::from_create(&s).unwrap(), false, false).unwrap();
        }
        c
    }

    fn compile(sql: &str) -> Result<JoinPlan> {
        let c = catalog();
        let Statement::Query(q) = parse(sql).unwrap().remove(0).statement else { panic!() };
        JoinPlan::compile(&Planner::new().plan(&c, &q.sql)?, &c)
    }

    #[test]
    fn should_join_on_the_stream_key_without_rekeying_and_rekey_otherwise() {
        let j = compile("SELECT c.userid, u.name FROM clicks c JOIN users u ON c.userid = u.id").unwrap();
        assert!(j.on_stream_key());
        assert_eq!(j.columns()[0], Column { name: "userid".into(), ty: SqlType::String, key: true });
        let j = compile("SELECT u.id, c.page FROM clicks c LEFT JOIN users u ON u.id = c.userid").unwrap();
        assert!(j.on_stream_key(), "either side of the equality");
        assert!(j.columns()[0].key);
        let j = compile("SELECT c.page, u.name FROM clicks c JOIN users u ON c.page = u.id").unwrap();
        assert!(!j.on_stream_key());
        assert!(j.columns()[0].key && j.columns()[0].name == "page");
        let j = compile("SELECT c.n, c.page FROM clicks c JOIN counts t ON c.n + 1 = t.n").unwrap();
        assert!(!j.on_stream_key(), "an expression");
        assert!(j.require_key("x").is_err(), "c.n is not the join key c.n + 1");
    }

    #[test]
    fn should_frame_and_unframe_a_rekeyed_record() {
        for key in [None, Some(&b""[..]), Some(&b"user-1"[..])] {
            let framed = frame(key, b"{\"a\":1}");
            assert_eq!(unframe(framed).unwrap(), (key.map(<[u8]>::to_vec), b"{\"a\":1}".to_vec()));
        }
        assert!(unframe(vec![1, 0, 0, 0, 9, b'x']).is_err(), "a length past the end");
        assert!(unframe(vec![7]).is_err() && unframe(Vec::new()).is_err());
    }
}
