//! Compiling a query's SELECT into a plan: a filter and projection, an aggregation, or a
//! stream–table join, each over the catalog's streams and tables.

use std::sync::Arc;

use super::Executor;
use crate::aggregate::AggregatePlan;
use crate::error::{Result, SqlError};
use crate::eval::Stateless;
use crate::join::JoinPlan;
use crate::query::{PartitionBy, QueryPlan, StatelessPlan};
use crate::statement::{Query, SourceKind};

impl Executor {
    /// Compiles a persistent query's SELECT: a filter and projection over one stream, or an
    /// aggregation (optionally windowed) of one stream.
    pub(super) fn compile(&self, query: &Query) -> Result<QueryPlan> {
        let (plan, limit) = self.compile_with(query, false)?;
        if limit.is_some() {
            return Err(SqlError::Semantic("LIMIT belongs to push queries (SELECT … EMIT CHANGES LIMIT n)".into()));
        }
        Ok(plan)
    }

    /// Compiles a query; for a push query (`push`), every column goes to the row and a top
    /// LIMIT is returned.
    pub(super) fn compile_with(&self, query: &Query, push: bool) -> Result<(QueryPlan, Option<usize>)> {
        let planned = match query.window {
            Some(_) => self.planner.plan_windowed(&self.catalog, &query.sql)?,
            None => self.planner.plan(&self.catalog, &query.sql)?,
        };
        let (plan, limit) = crate::planner::take_limit(&planned, "on a stream")?;
        if crate::join::has_join(plan) {
            return Ok((self.compile_join(plan, query, push)?, limit));
        }
        let source = single_source(plan)?;
        let def = self
            .catalog
            .get(&source)
            .ok_or_else(|| SqlError::Semantic(format!("no stream or table named {source}")))?;
        if def.kind == SourceKind::Table {
            if query.window.is_some() {
                return Err(SqlError::Semantic(format!(
                    "WINDOW on the table {source}: windows group a stream's records by time; a table holds one \
                     row per key"
                )));
            }
            if has_aggregate(plan)? {
                return Err(SqlError::Unsupported(format!(
                    "GROUP BY over the table {source} (aggregations read streams)"
                )));
            }
            if query.partition_by.is_some() {
                return Err(SqlError::Semantic(format!(
                    "PARTITION BY on the table {source}: a table stays keyed by its PRIMARY KEY"
                )));
            }
        }
        if has_aggregate(plan)? {
            if query.partition_by.is_some() {
                return Err(SqlError::Unsupported("PARTITION BY with GROUP BY (the group is the key)".into()));
            }
            let mut a = AggregatePlan::compile(plan, def, query.window, query.emit)?;
            if push {
                a.all_columns_in_value();
            }
            return Ok((QueryPlan::Aggregate(Arc::new(a)), limit));
        }
        if let Some(w) = &query.window {
            return Err(SqlError::Semantic(format!("WINDOW {:?} without GROUP BY: a window aggregates", w.kind)));
        }
        let stateless = Stateless::compile(plan, def)?;
        let partition = match &query.partition_by {
            None => None,
            Some(text) => {
                let expr = self.planner.plan_expr(&self.catalog, text, stateless.scan_schema())?;
                let name = match &expr {
                    datafusion_expr::Expr::Column(c) => c.name.clone(),
                    _ => "ksql_col_0".to_string(),
                };
                Some(PartitionBy { expr, name })
            }
        };
        let mut p = StatelessPlan::new(stateless, partition)?;
        if push {
            p.all_columns_in_value();
        }
        Ok((QueryPlan::Stateless(Arc::new(p)), limit))
    }

    /// Compiles a stream–table join; a join on the stream's key needs the two topics
    /// co-partitioned.
    pub(super) fn compile_join(
        &self,
        plan: &datafusion_expr::LogicalPlan,
        query: &Query,
        push: bool,
    ) -> Result<QueryPlan> {
        if has_aggregate(plan)? {
            return Err(SqlError::Unsupported(
                "GROUP BY over a join; write the join to a stream (CREATE STREAM … AS SELECT … JOIN …) and aggregate that"
                    .into(),
            ));
        }
        if query.window.is_some() {
            return Err(SqlError::Unsupported("WINDOW on a stream–table join".into()));
        }
        if query.partition_by.is_some() {
            return Err(SqlError::Unsupported("PARTITION BY on a join (its output is keyed by the join key)".into()));
        }
        let mut join = JoinPlan::compile(plan, &self.catalog)?;
        if join.on_stream_key() {
            let (s, t) = (join.stream(), join.table());
            let (sp, tp) = (self.admin.partitions(&s.topic)?, self.admin.partitions(&t.topic)?);
            if let (Some(sp), Some(tp)) = (sp, tp) {
                if sp != tp {
                    return Err(SqlError::Semantic(format!(
                        "{} (topic {}, {sp} partitions) and {} (topic {}, {tp} partitions) are not co-partitioned: a \
                         join on the stream's key reads both partition by partition. Repartition the stream first: \
                         CREATE STREAM {}_{tp} WITH (partitions={tp}) AS SELECT * FROM {};",
                        s.name, s.topic, t.name, t.topic, s.name, s.name
                    )));
                }
            }
        }
        if push {
            join.all_columns_in_value();
        }
        Ok(QueryPlan::Join(Arc::new(join)))
    }
}

/// Whether a plan aggregates.
fn has_aggregate(plan: &datafusion_expr::LogicalPlan) -> Result<bool> {
    let mut found = false;
    datafusion_common::tree_node::TreeNode::apply(plan, |p| {
        found |= matches!(p, datafusion_expr::LogicalPlan::Aggregate(_));
        Ok(datafusion_common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(|e| SqlError::Semantic(e.to_string()))?;
    Ok(found)
}

/// The one stream or table a plan scans; joins come later.
fn single_source(plan: &datafusion_expr::LogicalPlan) -> Result<String> {
    let mut names = Vec::new();
    datafusion_common::tree_node::TreeNode::apply(plan, |p| {
        if let datafusion_expr::LogicalPlan::TableScan(s) = p {
            names.push(s.table_name.table().to_string());
        }
        Ok(datafusion_common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(|e| SqlError::Semantic(e.to_string()))?;
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(SqlError::Semantic("the query reads no stream or table".into())),
        _ => Err(SqlError::Unsupported("queries over more than one source other than a stream–table JOIN".into())),
    }
}
