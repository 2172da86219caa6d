//! Persistent stateless queries as Moldau topologies: a source over the input topic, one
//! processor that holds records back and evaluates them a batch at a time with DataFusion's
//! physical expressions (flushed by the engine before every commit, so exactly-once holds),
//! and a sink to the output topic. Built with the DSL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion_expr::{Expr, ExprSchemable};
use datafusion_physical_expr::PhysicalExpr;
use moldau_dsl::state::BytesSerde;
use moldau_dsl::{Consumed, KStream, Produced, StreamsBuilder};
use moldau_engine::{Processor, ProcessorContext, Record, Topology};

use crate::catalog::Format;
use crate::error::{Result, SqlError};
use crate::eval::{good_rows, held_record, reject_bad, rowtime, BadRecord, InputRecord, Stateless};
use crate::statement::Column;
use crate::types::SqlType;

/// How many records a query holds before it evaluates them as one batch.
pub const BATCH: usize = 1024;

/// Where a query's rows go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A topic (persistent queries).
    Topic(Output),
    /// A channel of JSON row values, every column in the value (push queries). A full
    /// channel holds the query back; a closed one drops the rows.
    Rows(std::sync::mpsc::SyncSender<Vec<u8>>),
}

/// The topic a persistent query writes, and the formats it writes in.
#[derive(Debug, Clone)]
pub struct Output {
    /// The topic.
    pub topic: String,
    /// The keys' format; `None`: the keys are written as the query's source writes them.
    pub key_format: Option<Format>,
    /// The values' format.
    pub value_format: Format,
}

impl Sink {
    /// `topic`, its keys as the source's, its values JSON.
    pub fn topic(topic: impl Into<String>) -> Sink {
        Sink::Topic(Output { topic: topic.into(), key_format: None, value_format: Format::Json })
    }

    /// The format of the values it takes (rows are JSON).
    pub(crate) fn value_format(&self) -> Format {
        match self {
            Sink::Topic(o) => o.value_format,
            Sink::Rows(_) => Format::Json,
        }
    }

    /// The format of the keys it takes, when a query computes them (`source`: the format of
    /// its source's keys, kept unless the output names another).
    pub(crate) fn key_format(&self, source: Format) -> Format {
        match self {
            Sink::Topic(Output { key_format: Some(f), .. }) => *f,
            _ => source,
        }
    }
}

/// A compiled stateless query and the shape of what it writes.
#[derive(Debug)]
pub struct StatelessPlan {
    query: Stateless,
    /// `PARTITION BY`: the new key's expression.
    partition: Option<Arc<dyn PhysicalExpr>>,
    /// Output columns written to the record value (all but the key column).
    value_columns: Vec<usize>,
    /// The output's columns, the key column (if any) first.
    columns: Vec<Column>,
    /// It reads a table: a tombstone, or a row the WHERE clause leaves out, deletes the key.
    table: bool,
}

/// A `PARTITION BY`: the new key's expression and its column.
#[derive(Debug)]
pub struct PartitionBy {
    /// The expression, over the scan.
    pub expr: Expr,
    /// Its column in the output: named after the column it is, else `ksql_col_0`.
    pub name: String,
}

impl StatelessPlan {
    /// The plan of `query`. Without `partition`, the record key passes through and a source
    /// key column selected under its own name stays the key column; with it, the expression's
    /// value is the new key and the output column of its name is the key column. Every other
    /// output column goes to the value.
    pub fn new(query: Stateless, partition: Option<PartitionBy>) -> Result<Self> {
        // The key columns: the source's (passed through), or PARTITION BY's new one.
        let (keys, partition) = match partition {
            None => (query.source().key_columns().into_iter().map(|c| (c.name, c.ty)).collect::<Vec<_>>(), None),
            Some(p) => {
                let expr = query.compile_expr(&p.expr)?;
                let ty = p.expr.get_type(query.scan_schema()).map_err(|e| SqlError::Semantic(e.to_string()))?;
                let ty = SqlType::from_arrow(&ty)
                    .map_err(|e| SqlError::Unsupported(format!("PARTITION BY {}: {e}", p.name)))?;
                (vec![(p.name, ty)], Some(expr))
            }
        };
        let mut value_columns = Vec::new();
        let mut columns = Vec::new();
        let mut kept: Vec<Option<Column>> = vec![None; keys.len()];
        for (i, f) in query.output_schema().fields().iter().enumerate() {
            let ty = SqlType::from_arrow(f.data_type())
                .map_err(|e| SqlError::Unsupported(format!("column {}: {e}", f.name())))?;
            let key = keys.iter().position(|(name, kt)| name == f.name() && *kt == ty).filter(|&k| kept[k].is_none());
            match key {
                Some(k) => kept[k] = Some(Column { name: f.name().clone(), ty, key: true }),
                None => {
                    value_columns.push(i);
                    columns.push(Column { name: f.name().clone(), ty, key: false });
                }
            }
        }
        let selected = kept.iter().filter(|k| k.is_some()).count();
        if partition.is_some() {
            // A new key not selected: still the key column, as ksqlDB keeps it.
            let (name, ty) = keys.into_iter().next().expect("PARTITION BY makes one key");
            columns.insert(0, kept.pop().flatten().unwrap_or(Column { name, ty, key: true }));
        } else if selected == keys.len() {
            columns.splice(0..0, kept.into_iter().flatten());
        } else if selected > 0 {
            return Err(SqlError::Semantic(format!(
                "select every key column of {} ({}) or none: the records keep their keys",
                query.source().name,
                keys.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let table = query.source().kind == crate::statement::SourceKind::Table;
        Ok(StatelessPlan { query, partition, value_columns, columns, table })
    }

    /// The source it reads.
    pub fn source(&self) -> &crate::catalog::SourceDef {
        self.query.source()
    }

    /// Writes every output column to the value (a push query's rows).
    pub fn all_columns_in_value(&mut self) {
        self.value_columns = (0..self.query.output_schema().fields().len()).collect();
    }

    /// The output schema.
    pub fn output_schema(&self) -> &datafusion_common::arrow::datatypes::SchemaRef {
        self.query.output_schema()
    }

    /// The columns of the stream it writes.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The query's topology: read `source topic`, evaluate, write `sink`. `skipped` counts
    /// the records that did not match the source's schema (logged and skipped).
    pub fn topology(self: &Arc<Self>, sink: &Sink, skipped: Arc<AtomicU64>) -> Result<Topology> {
        let b = StreamsBuilder::new();
        let plan = Arc::clone(self);
        let (key_format, value_format) = (sink.key_format(self.source().key_format), sink.value_format());
        let evaluate = move || Evaluate {
            plan: Arc::clone(&plan),
            held: Vec::with_capacity(BATCH),
            skipped: skipped.clone(),
            key_format,
            value_format,
        };
        let topic = &self.query.source().topic;
        let consumed = Consumed::with(BytesSerde, BytesSerde);
        let out: KStream<Key, Option<Vec<u8>>> = if self.table {
            b.changelog(topic, consumed).process(evaluate, &[])
        } else {
            b.stream(topic, consumed).process(evaluate, &[])
        };
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

type Key = Option<Vec<u8>>;

/// The processor: holds up to [`BATCH`] records, then decodes, filters, projects and encodes
/// them at once.
struct Evaluate {
    plan: Arc<StatelessPlan>,
    held: Vec<InputRecord>,
    skipped: Arc<AtomicU64>,
    /// The format of the keys PARTITION BY computes.
    key_format: Format,
    /// The format of the values it writes.
    value_format: Format,
}

type Out = Option<Vec<u8>>;

impl Evaluate {
    fn run(&mut self, ctx: &mut ProcessorContext<'_, Key, Out>) -> moldau_engine::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let fail = |e: SqlError| moldau_engine::Error::processing(ctx_name(), e.to_string());
        let q = &self.plan.query;
        let table = self.plan.table;
        let (batch, bad) = q.decode(&self.held).map_err(fail)?;
        // A table's tombstone is not bad: it is a delete, passed on below.
        let rejected: Vec<BadRecord> =
            bad.iter().filter(|b| !(table && self.held[b.index].value.is_none())).cloned().collect();
        reject_bad(ctx, &q.source().topic, &self.held, &rejected, &self.skipped)?;
        let good = good_rows(self.held.len(), &bad);
        let (out, rows) = q.eval_rows(&batch).map_err(fail)?;
        let values = out
            .project(&self.plan.value_columns)
            .map_err(|e| moldau_engine::Error::processing(ctx_name(), e.to_string()))?;
        let encoded = crate::values::encode(self.value_format, &values).map_err(fail)?;
        let rowtime = rowtime(&batch);
        let mut held = std::mem::take(&mut self.held);
        if table {
            // Every update in order: its new row, or a delete when it is a tombstone or the
            // WHERE clause leaves it out (the row it replaced may have matched).
            let mut outputs = encoded.into_iter().zip(rows).map(|(v, row)| (good[row], v)).peekable();
            let mut decoded = good.iter().copied().peekable();
            for (i, input) in held.iter_mut().enumerate() {
                let is_good = decoded.next_if_eq(&i).is_some();
                if input.key.is_none() {
                    continue; // a table row needs a key
                }
                let value = match outputs.next_if(|(at, _)| *at == i) {
                    Some((_, v)) => v,
                    None if is_good || input.value.is_none() => None,
                    None => continue, // a bad record: skipped
                };
                ctx.forward(Record::new(input.key.take(), value, input.timestamp))?;
            }
            held.clear();
            self.held = held;
            return Ok(());
        }
        let new_keys = match &self.plan.partition {
            Some(p) => Some(
                p.evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| moldau_engine::Error::processing(ctx_name(), e.to_string()))?,
            ),
            None => None,
        };
        let key_format = self.key_format;
        for (value, row) in encoded.into_iter().zip(rows) {
            let input = &mut held[good[row]];
            let key = match &new_keys {
                None => input.key.take(),
                Some(keys) => match crate::codec::encode_key(key_format, keys, row) {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping a record whose PARTITION BY value cannot be a key");
                        self.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            ctx.forward(Record::new(key, value, rowtime.value(row)))?;
        }
        held.clear();
        self.held = held;
        Ok(())
    }

    fn hold(&mut self, r: InputRecord, ctx: &mut ProcessorContext<'_, Key, Out>) -> moldau_engine::Result<()> {
        self.held.push(r);
        if self.held.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }
}

fn ctx_name() -> &'static str {
    "SQL-EVALUATE"
}

impl Processor<Key, Vec<u8>, Key, Out> for Evaluate {
    fn process(
        &mut self,
        r: Record<Key, Vec<u8>>,
        ctx: &mut ProcessorContext<'_, Key, Out>,
    ) -> moldau_engine::Result<()> {
        let r = held_record(r, ctx.record_metadata());
        self.hold(r, ctx)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Key, Out>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

/// A table's updates: `None` values are deletes.
impl Processor<Key, Out, Key, Out> for Evaluate {
    fn process(&mut self, r: Record<Key, Out>, ctx: &mut ProcessorContext<'_, Key, Out>) -> moldau_engine::Result<()> {
        let (partition, offset) = ctx.record_metadata().map_or((-1, -1), |m| (m.partition, m.offset));
        let r = InputRecord { key: r.key, value: r.value, timestamp: r.timestamp, partition, offset };
        self.hold(r, ctx)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Key, Out>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

/// A compiled persistent query: stateless, or an aggregation.
#[derive(Debug, Clone)]
pub enum QueryPlan {
    /// Filter and projection.
    Stateless(Arc<StatelessPlan>),
    /// GROUP BY, optionally windowed.
    Aggregate(Arc<crate::aggregate::AggregatePlan>),
    /// A stream–table join.
    Join(Arc<crate::join::JoinPlan>),
}

impl QueryPlan {
    /// The columns of what it writes.
    pub fn columns(&self) -> &[Column] {
        match self {
            QueryPlan::Stateless(p) => p.columns(),
            QueryPlan::Aggregate(p) => p.columns(),
            QueryPlan::Join(p) => p.columns(),
        }
    }

    /// The source it reads (a join's stream).
    pub fn source(&self) -> &crate::catalog::SourceDef {
        match self {
            QueryPlan::Stateless(p) => p.source(),
            QueryPlan::Aggregate(p) => p.source(),
            QueryPlan::Join(p) => p.stream(),
        }
    }

    /// Every source it reads.
    pub fn sources(&self) -> Vec<String> {
        match self {
            QueryPlan::Join(p) => vec![p.stream().name.clone(), p.table().name.clone()],
            other => vec![other.source().name.clone()],
        }
    }

    /// The format of the keys it writes (a join's: the table's key format).
    pub fn key_format(&self) -> Format {
        match self {
            QueryPlan::Join(p) => p.table().key_format,
            other => other.source().key_format,
        }
    }

    /// Whether it computes the keys it writes (GROUP BY, PARTITION BY), so that it can write
    /// them in any key format.
    pub fn computes_keys(&self) -> bool {
        match self {
            QueryPlan::Stateless(p) => p.partition.is_some(),
            QueryPlan::Aggregate(_) => true,
            QueryPlan::Join(_) => false,
        }
    }

    /// The topic whose partitions are its tasks (a join's: the table's).
    pub fn task_topic(&self) -> &str {
        match self {
            QueryPlan::Join(p) => &p.table().topic,
            other => &other.source().topic,
        }
    }

    /// The output schema (every column, in order).
    pub fn output_schema(&self) -> &datafusion_common::arrow::datatypes::SchemaRef {
        match self {
            QueryPlan::Stateless(p) => p.output_schema(),
            QueryPlan::Aggregate(p) => &p.output_schema,
            QueryPlan::Join(p) => p.output_schema(),
        }
    }

    /// The topology writing `sink`.
    pub fn topology(&self, sink: &Sink, skipped: Arc<AtomicU64>) -> Result<Topology> {
        match self {
            QueryPlan::Stateless(p) => p.topology(sink, skipped),
            QueryPlan::Aggregate(p) => p.topology(sink, skipped),
            QueryPlan::Join(p) => p.topology(sink, skipped),
        }
    }
}
