//! Aggregations (`GROUP BY` with DataFusion's aggregate functions, `HAVING`, windows) as
//! Moldau topologies built with the DSL:
//!
//! ```text
//! source ─▶ SQL-PRE-AGGREGATE ─▶ <query>-GroupBy-repartition ─▶ aggregate [per window] ─▶ to_stream [─▶ suppress] ─▶ SQL-POST-AGGREGATE ─▶ sink
//!           WHERE, group key,        (records re-keyed by          DataFusion accumulators'        EMIT FINAL        HAVING, projection,
//!           aggregate arguments       the group key)               states in the store                               JSON value
//! ```
//!
//! The stages before and after the store evaluate batches of records with DataFusion's
//! physical expressions; the store keeps each group's accumulator states (rowcodec), so
//! user-defined aggregates work as the built-in ones do.

mod columns;
mod native;
mod stages;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::datatypes::{Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::expr::AggregateFunction;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use moldau_dsl::state::BytesSerde;
use moldau_dsl::{Consumed, Grouped, Produced, SessionWindows, StreamsBuilder, Suppressed, TimeWindows};
use moldau_engine::Topology;

use crate::catalog::SourceDef;
use crate::error::{Result, SqlError};
use crate::planner::WINDOW_COLUMNS;
use crate::query::Sink;
use crate::statement::{Column, Emit, WindowKind, WindowSpec};
use crate::types::SqlType;

use stages::{Accumulators, PostAggregate, PreAggregate};

/// ksqlDB's grace period when a window names none: 24 hours.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A compiled aggregation.
#[derive(Debug)]
pub struct AggregatePlan {
    pub(crate) source: SourceDef,
    /// The scan's schema (the source's, with window columns when windowed).
    pub(crate) scan_schema: SchemaRef,
    pub(crate) filter: Option<Arc<dyn PhysicalExpr>>,
    /// The GROUP BY expressions (over the scan), in order.
    pub(crate) group: Vec<Arc<dyn PhysicalExpr>>,
    /// The key columns they become (named as selected), in the same order.
    pub(crate) key_columns: Vec<Column>,
    /// Their names.
    pub(crate) key_names: Vec<String>,
    pub(crate) accumulators: Arc<Accumulators>,
    /// The aggregation's output schema: group column, [WINDOWSTART, WINDOWEND,] aggregates.
    pub(crate) agg_schema: SchemaRef,
    pub(crate) having: Option<Arc<dyn PhysicalExpr>>,
    pub(crate) projection: Vec<Arc<dyn PhysicalExpr>>,
    /// Output columns written to the value (all but the group key selected as itself).
    pub(crate) value_columns: Vec<usize>,
    pub(crate) output_schema: SchemaRef,
    columns: Vec<Column>,
    window: Option<WindowSpec>,
    emit: Emit,
    /// The group is the source's own key, written as the record key is: the records stay in
    /// their partitions and no repartition is needed.
    keyed_by_group: bool,
}

fn semantic(e: impl std::fmt::Display) -> SqlError {
    SqlError::Semantic(e.to_string())
}

impl AggregatePlan {
    /// Compiles a planned aggregation over `source` (windowed when `window` is given).
    pub fn compile(
        plan: &LogicalPlan,
        source: &SourceDef,
        window: Option<WindowSpec>,
        emit: Option<Emit>,
    ) -> Result<Self> {
        let LogicalPlan::Projection(p) = plan else {
            return Err(SqlError::Unsupported(format!("an aggregation of this shape: {}", plan.display())));
        };
        let mut below = p.input.as_ref();
        let mut having = None;
        if let LogicalPlan::Filter(f) = below {
            having = Some(f.predicate.clone());
            below = f.input.as_ref();
        }
        let LogicalPlan::Aggregate(agg) = below else {
            return Err(SqlError::Unsupported(format!("{} in an aggregation", below.display())));
        };
        let mut scan = agg.input.as_ref();
        let mut filter = None;
        if let LogicalPlan::Filter(f) = scan {
            filter = Some(f.predicate.clone());
            scan = f.input.as_ref();
        }
        match scan {
            LogicalPlan::TableScan(_) => {}
            LogicalPlan::SubqueryAlias(a) if matches!(a.input.as_ref(), LogicalPlan::TableScan(_)) => {}
            other => return Err(SqlError::Unsupported(format!("{} under an aggregation", other.display()))),
        }
        let scan_df = Arc::clone(scan.schema());
        let props = ExecutionProps::new();
        let ctx = PhysicalPlanningContext::default();
        let physical = |e: &Expr, schema: &DFSchema| create_physical_expr(e, schema, &props, &ctx).map_err(semantic);

        // GROUP BY: the user's expressions, then the window columns the planner added.
        let window_count = if window.is_some() { WINDOW_COLUMNS.len() } else { 0 };
        let user_groups = agg.group_expr.len().saturating_sub(window_count);
        if user_groups == 0 {
            return Err(SqlError::Semantic(
                "an aggregation needs a GROUP BY: its groups are the keys of the table it writes".into(),
            ));
        }
        let group_exprs = &agg.group_expr[..user_groups];
        // Windowed too: the window operators close windows on the stream time they observe
        // (the records the stage before them handed on), not on the task's, which runs ahead
        // of the records that stage holds back.
        let keyed_by_group = matches!(group_exprs, [Expr::Column(c)]
                if source.columns.iter().any(|k| k.key && k.name == c.name)
                    && source.key_format == crate::catalog::Format::Kafka);
        let group = group_exprs.iter().map(|g| physical(g, &scan_df)).collect::<Result<Vec<_>>>()?;

        let scan_schema: SchemaRef = Arc::new(scan_df.as_arrow().clone());
        let group_count = agg.group_expr.len();
        let mut aggs: Vec<AggregateFunctionExpr> = Vec::new();
        for (i, e) in agg.aggr_expr.iter().enumerate() {
            let name = agg.schema.field(group_count + i).name().clone();
            let inner = match e {
                Expr::Alias(a) => a.expr.as_ref(),
                other => other,
            };
            let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
                return Err(SqlError::Unsupported(format!("aggregate expression {name}")));
            };
            if params.filter.is_some() || !params.order_by.is_empty() {
                return Err(SqlError::Unsupported(format!("FILTER or ORDER BY inside {name}")));
            }
            let args = params.args.iter().map(|a| physical(a, &scan_df)).collect::<Result<Vec<_>>>()?;
            let built = AggregateExprBuilder::new(Arc::clone(func), args)
                .schema(Arc::clone(&scan_schema))
                .alias(name.clone())
                .human_display(name)
                .with_distinct(params.distinct)
                .build()
                .map_err(semantic)?;
            aggs.push(built);
        }
        let accumulators = Arc::new(Accumulators::new(aggs, &scan_schema)?);

        let agg_df = Arc::clone(&agg.schema);
        let having = having.as_ref().map(|h| physical(h, &agg_df)).transpose()?;
        let projection = p.expr.iter().map(|e| physical(e, &agg_df)).collect::<Result<Vec<_>>>()?;
        let output_schema = Arc::new(Schema::new(
            p.schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
        ));
        // Each GROUP BY expression selected as itself is a key column of the output, in
        // GROUP BY order; the other columns are its value.
        let mut value_columns = Vec::new();
        let mut columns = Vec::new();
        let mut keys: Vec<Option<Column>> = vec![None; user_groups];
        for (i, (e, f)) in p.expr.iter().zip(p.schema.fields()).enumerate() {
            let ty = SqlType::from_arrow(f.data_type())
                .map_err(|e| SqlError::Unsupported(format!("column {}: {e}", f.name())))?;
            let group_of = match e.clone().unalias() {
                Expr::Column(c) => (0..user_groups).find(|&g| {
                    keys[g].is_none()
                        && (Expr::Column(c.clone()) == group_exprs[g]
                            || datafusion_common::Column::from(agg.schema.qualified_field(g)) == c)
                }),
                _ => None,
            };
            match group_of {
                Some(g) => keys[g] = Some(Column { name: f.name().clone(), ty, key: true }),
                None => {
                    value_columns.push(i);
                    columns.push(Column { name: f.name().clone(), ty, key: false });
                }
            }
        }
        let mut key_columns = Vec::with_capacity(user_groups);
        for (g, k) in keys.into_iter().enumerate() {
            match k {
                Some(k) => key_columns.push(k),
                None => {
                    return Err(SqlError::Semantic(format!(
                        "the GROUP BY expression {} must be selected: it is a key of the table the query writes",
                        group_exprs[g].schema_name()
                    )))
                }
            }
        }
        let key_names = key_columns.iter().map(|k| k.name.clone()).collect();
        columns.splice(0..0, key_columns.iter().cloned());
        Ok(AggregatePlan {
            source: source.clone(),
            scan_schema,
            filter: filter.as_ref().map(|f| physical(f, &scan_df)).transpose()?,
            group,
            key_columns,
            key_names,
            accumulators,
            agg_schema: Arc::new(agg_df.as_arrow().clone()),
            having,
            projection,
            value_columns,
            output_schema,
            columns,
            window,
            emit: emit.unwrap_or(Emit::Changes),
            keyed_by_group,
        })
    }

    /// Writes every output column to the value (a push query's rows).
    pub fn all_columns_in_value(&mut self) {
        self.value_columns = (0..self.output_schema.fields().len()).collect();
    }

    /// The columns of the table it writes (the group key first).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The source it reads.
    pub fn source(&self) -> &SourceDef {
        &self.source
    }

    /// The window, if windowed.
    pub(crate) fn window_kind(&self) -> Option<WindowKind> {
        self.window.map(|w| w.kind)
    }

    /// Whether the table it writes is windowed.
    pub fn windowed(&self) -> bool {
        self.window.is_some()
    }

    /// The topology (its internal topics and stores named as ksqlDB names them, under the
    /// query's application id); `skipped` counts input records that did not match the
    /// source's schema or had a null group key.
    pub fn topology(self: &Arc<Self>, sink: &Sink, skipped: Arc<AtomicU64>) -> Result<Topology> {
        let b = StreamsBuilder::new();
        let pre = Arc::clone(self);
        let skipped_pre = skipped.clone();
        let consumed = Consumed::with(BytesSerde, BytesSerde);
        // The group key is written as the output's keys are, from the store on.
        let key_format = sink.key_format(self.source.key_format);
        let value_format = sink.value_format();
        let keyed = if self.keyed_by_group && key_format == self.source.key_format {
            // Grouped by the record key: each record keeps its key and partition (null keys are
            // skipped by the deserialization handler, as a null group would be).
            b.stream_keyed(&self.source.topic, consumed)
                .process_values(move || PreAggregate::new(Arc::clone(&pre), key_format, skipped_pre.clone()), &[])
        } else {
            b.stream(&self.source.topic, consumed)
                .process(move || PreAggregate::new(Arc::clone(&pre), key_format, skipped_pre.clone()), &[])
        };
        let grouped = keyed.group_by_key(Grouped::with(BytesSerde, BytesSerde).named("Aggregate-GroupBy"));
        let store = "Aggregate-Materialize";
        let acc = Arc::clone(&self.accumulators);
        let step = move |_: &Vec<u8>, args: Vec<u8>, state: Vec<u8>| acc.step(&args, state);
        let post = Arc::clone(self);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let out = match self.window {
            None => grouped
                .aggregate(Vec::new, step, store, BytesSerde)
                .to_stream()
                .process(move || PostAggregate::new(Arc::clone(&post), key_format, value_format), &[]),
            Some(w) => {
                let grace = ms(w.grace.unwrap_or(DEFAULT_GRACE));
                let table = match w.kind {
                    WindowKind::Tumbling { size } => {
                        let windowed = grouped.windowed_by(TimeWindows::of_size_and_grace(ms(size), grace));
                        let windowed =
                            if self.emit == Emit::Final { windowed.emit_on_window_close() } else { windowed };
                        windowed.aggregate(Vec::new, step, store, BytesSerde)
                    }
                    WindowKind::Hopping { size, advance } => {
                        let windowed = grouped
                            .windowed_by(TimeWindows::of_size_and_grace(ms(size), grace).advance_by(ms(advance)));
                        let windowed =
                            if self.emit == Emit::Final { windowed.emit_on_window_close() } else { windowed };
                        windowed.aggregate(Vec::new, step, store, BytesSerde)
                    }
                    WindowKind::Session { gap } => {
                        let acc = Arc::clone(&self.accumulators);
                        let merge = move |_: &Vec<u8>, a: Vec<u8>, b: Vec<u8>| acc.merge(&a, &b);
                        let sessions = grouped
                            .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(ms(gap), grace))
                            .aggregate(Vec::new, step, merge, store, BytesSerde);
                        if self.emit == Emit::Final {
                            sessions.suppress(Suppressed::until_window_closes().named("Aggregate-Suppress"))
                        } else {
                            sessions
                        }
                    }
                };
                table.to_stream().process(move || PostAggregate::new(Arc::clone(&post), key_format, value_format), &[])
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::planner::Planner;
    use crate::statement::{parse, Statement};
    use moldau_engine::testing::TopologyTestDriver;

    fn plan(create: &str, query: &str) -> Arc<AggregatePlan> {
        let Statement::CreateSource(s) = parse(create).unwrap().remove(0).statement else { panic!("{create}") };
        let def = SourceDef::from_create(&s).unwrap();
        let mut c = Catalog::new();
        c.add(def.clone(), false, false).unwrap();
        let Statement::Query(q) = parse(query).unwrap().remove(0).statement else { panic!("{query}") };
        let p = Planner::new();
        let logical = if q.window.is_some() { p.plan_windowed(&c, &q.sql) } else { p.plan(&c, &q.sql) }.unwrap();
        Arc::new(AggregatePlan::compile(&logical, &def, q.window, q.emit).unwrap())
    }

    #[test]
    fn should_count_and_sum_per_group_through_the_topology() {
        let p = plan(
            "CREATE STREAM s (k STRING KEY, g STRING, v BIGINT) WITH (kafka_topic='in', value_format='JSON')",
            "SELECT g, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY g HAVING SUM(v) > 2",
        );
        let t = p.topology(&Sink::topic("out"), Arc::new(AtomicU64::new(0))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut d = TopologyTestDriver::with_state_dir(t, dir.path()).unwrap();
        for (i, (g, v)) in [("a", 1), ("b", 5), ("a", 2), ("a", 4)].into_iter().enumerate() {
            let value = format!(r#"{{"g":"{g}","v":{v}}}"#);
            d.pipe_raw("in", Some(b"k".to_vec()), Some(value.into_bytes()), i as i64).unwrap();
        }
        let out: Vec<String> = d
            .read_output("out")
            .into_iter()
            .map(|r| {
                let v = r.value.map_or("<null>".into(), |v| String::from_utf8(v).unwrap());
                format!("{}={v}", String::from_utf8(r.key.unwrap()).unwrap())
            })
            .collect();
        assert_eq!(out, ["a=<null>", r#"b={"n":1,"total":5}"#, r#"a={"n":2,"total":3}"#, r#"a={"n":3,"total":7}"#]);
    }

    #[test]
    fn should_emit_a_tumbling_window_once_it_closes() {
        let p = plan(
            "CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='in', value_format='JSON')",
            "SELECT k, WINDOWSTART AS ws, COUNT(*) AS n FROM s WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY k EMIT FINAL",
        );
        let t = p.topology(&Sink::topic("out"), Arc::new(AtomicU64::new(0))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut d = TopologyTestDriver::with_state_dir(t, dir.path()).unwrap();
        for ts in [1_000, 2_000, 12_000, 25_000] {
            d.pipe_raw("in", Some(b"a".to_vec()), Some(br#"{"v":1}"#.to_vec()), ts).unwrap();
        }
        let out: Vec<(Vec<u8>, String)> = d
            .read_output("out")
            .into_iter()
            .map(|r| (r.key.unwrap(), String::from_utf8(r.value.unwrap()).unwrap()))
            .collect();
        let key = |start: i64| [b"a".as_slice(), &start.to_be_bytes(), &(start + 10_000).to_be_bytes()].concat();
        assert_eq!(
            out,
            [(key(0), r#"{"ws":0,"n":2}"#.to_string()), (key(10_000), r#"{"ws":10000,"n":1}"#.to_string())]
        );
    }

    #[test]
    fn should_keep_the_earliest_and_latest_value_by_offset() {
        let p = plan(
            "CREATE STREAM s (k STRING KEY, v STRING) WITH (kafka_topic='in', value_format='JSON')",
            "SELECT k, EARLIEST_BY_OFFSET(v) AS first, LATEST_BY_OFFSET(v) AS last FROM s GROUP BY k",
        );
        let t = p.topology(&Sink::topic("out"), Arc::new(AtomicU64::new(0))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut d = TopologyTestDriver::with_state_dir(t, dir.path()).unwrap();
        for (i, v) in [r#"{"v":"x"}"#, r#"{"v":null}"#, r#"{"v":"y"}"#].into_iter().enumerate() {
            d.pipe_raw("in", Some(b"a".to_vec()), Some(v.as_bytes().to_vec()), i as i64).unwrap();
        }
        let out: Vec<String> =
            d.read_output("out").into_iter().map(|r| String::from_utf8(r.value.unwrap()).unwrap()).collect();
        assert_eq!(
            out,
            [r#"{"first":"x","last":"x"}"#, r#"{"first":"x","last":"x"}"#, r#"{"first":"x","last":"y"}"#],
            "nulls are skipped"
        );
    }
}
