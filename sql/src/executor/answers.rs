//! Queries answered to the caller rather than written to a topic: pull queries (from the
//! store of the query that materializes a table) and push queries (a transient application).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use moldau_engine::KafkaStreams;

use super::{Executor, Outcome, PUSH_BUFFER};
use crate::error::{Result, SqlError};
use crate::pull::RemotePart;
use crate::push::PushQuery;
use crate::query::{QueryPlan, Sink};
use crate::statement::{Emit, Query, SourceKind};

/// What [`Executor::materialized`] finds.
struct Materialized<'a> {
    name: String,
    def: &'a crate::catalog::SourceDef,
    id: &'a String,
    query: &'a super::RunningQuery,
    agg: &'a Arc<crate::aggregate::AggregatePlan>,
}

impl Executor {
    /// The table a pull query reads and the running query that materializes it: its name,
    /// definition, query id, query and aggregation.
    fn materialized(&self, query: &Query) -> Result<Materialized<'_>> {
        if query.emit == Some(Emit::Final) {
            return Err(SqlError::Semantic("EMIT FINAL belongs to CREATE TABLE … AS SELECT with a WINDOW".into()));
        }
        if query.window.is_some() || query.partition_by.is_some() {
            return Err(SqlError::Semantic(
                "a pull query reads a table's current rows: WINDOW and PARTITION BY belong to persistent and push \
                 queries"
                    .into(),
            ));
        }
        let name = match self.planner.tables_of(&query.sql)?.as_slice() {
            [one] => one.clone(),
            [] => return Err(SqlError::Semantic("the query reads no stream or table".into())),
            _ => return Err(SqlError::Unsupported("a pull query over more than one table".into())),
        };
        let def =
            self.catalog.get(&name).ok_or_else(|| SqlError::Semantic(format!("no stream or table named {name}")))?;
        if def.kind == SourceKind::Stream {
            return Err(SqlError::Semantic(format!(
                "{name} is a stream: a pull query reads a table's current rows; to follow a stream, end the query \
                 with EMIT CHANGES"
            )));
        }
        let materialized = self.queries.iter().find_map(|(id, q)| match &q.plan {
            QueryPlan::Aggregate(a) if q.sink == name => Some((id, q, a)),
            _ => None,
        });
        let Some((id, q, agg)) = materialized else {
            return Err(SqlError::Semantic(format!(
                "{name} is not materialized: pull queries read the tables a running aggregation writes (CREATE TABLE \
                 … AS SELECT … GROUP BY); for {name}'s updates, end the query with EMIT CHANGES"
            )));
        };
        Ok(Materialized { name, def, id, query: q, agg })
    }

    /// Answers a pull query from the store of the query that materializes its table.
    pub(super) fn pull(&self, query: &Query) -> Result<Outcome> {
        let Materialized { name, def, id, query: q, agg } = self.materialized(query)?;
        let stores = q.streams.store(crate::pull::STORE);
        let partitions = match q.task_partitions.get() {
            Some(&n) => n,
            None => {
                let repartition = format!("{}-{id}-Aggregate-GroupBy-repartition", self.config.service_id);
                let n = match self.admin.partitions(&repartition)? {
                    Some(n) => n,
                    // Grouped by the source's key: no repartition, one task per source partition.
                    None => self.admin.partitions(&agg.source().topic)?.unwrap_or(0),
                };
                if n > 0 {
                    // A running query's partitions do not change: kept, not asked again.
                    let _ = q.task_partitions.set(n);
                }
                n
            }
        };
        let local: Vec<i32> = stores.iter().map(|(p, _)| *p).collect();
        let (stores, remote) = match self.session.get(crate::pull::PARTITIONS_PROPERTY) {
            // Forwarded by another server: these partitions, all hosted here.
            Some(asked) => {
                let asked = parse_partitions(asked)?;
                let missing: Vec<i32> = asked.iter().copied().filter(|p| !local.contains(p)).collect();
                if !missing.is_empty() {
                    return Err(SqlError::Execution(format!(
                        "partitions {missing:?} of {name} are not running on this server (the fleet is \
                         rebalancing); ask again shortly"
                    )));
                }
                (stores.into_iter().filter(|(p, _)| asked.contains(p)).collect(), Vec::new())
            }
            None if !stores.is_empty() && local.len() as i32 >= partitions => (stores, Vec::new()),
            None => {
                let remote = self.hosts_elsewhere(q, &name, partitions, &local)?;
                (stores, remote)
            }
        };
        let (table, plan) = self.plan_pull(query, &name, def, agg, stores)?;
        let mut answer = crate::pull::run(&plan, &table)?;
        answer.sql = query.text.clone();
        answer.remote = remote;
        Ok(Outcome::Pull(answer))
    }

    /// EXPLAIN of a pull query: the plan after DataFusion's filter and limit pushdown, and
    /// the table scan it makes (its lookup, filter and limit) over this server's partitions.
    /// `None` when `query` is not a pull query.
    pub(super) fn explain_pull(&self, query: &Query) -> Result<Option<String>> {
        if query.emit.is_some() || query.window.is_some() || query.partition_by.is_some() {
            return Ok(None);
        }
        let Ok(Materialized { name, def, id, query: q, agg }) = self.materialized(query) else { return Ok(None) };
        let stores = q.streams.store(crate::pull::STORE);
        let partitions: Vec<i32> = stores.iter().map(|(p, _)| *p).collect();
        let (table, plan) = self.plan_pull(query, &name, def, agg, stores)?;
        let scan = crate::pull::describe_scan(&plan, &table)?;
        Ok(Some(format!(
            "Pull query on {name}, materialized by {id} (partitions here: {partitions:?})\n\nLogical plan:\n{}\n\nScan:\n{scan}",
            plan.display_indent()
        )))
    }

    /// `query` planned over the table `name` (`def`, materialized by `agg`) read from `stores`,
    /// with the provider its plan scans.
    fn plan_pull(
        &self,
        query: &Query,
        name: &str,
        def: &crate::catalog::SourceDef,
        agg: &Arc<crate::aggregate::AggregatePlan>,
        stores: Vec<(i32, moldau_engine::state::StoreReader)>,
    ) -> Result<(Arc<crate::pull::MaterializedTable>, datafusion_expr::LogicalPlan)> {
        let table = Arc::new(crate::pull::MaterializedTable::new(def.clone(), Arc::clone(agg), stores));
        let plan = self.planner.plan_pull(&self.catalog, &query.sql, name, table.clone())?;
        Ok((table, plan))
    }

    /// The servers of the fleet hosting the partitions of `name` not running here (every one
    /// of `0..partitions` not in `local`), from the group's assignment and the servers'
    /// advertised `application.server`.
    fn hosts_elsewhere(
        &self,
        q: &super::RunningQuery,
        name: &str,
        partitions: i32,
        local: &[i32],
    ) -> Result<Vec<RemotePart>> {
        let not_ready = |unhosted: &[i32]| {
            SqlError::Execution(format!(
                "{name}'s state is not ready: partitions {unhosted:?} of its {partitions} are running on no server \
                 (its query is starting, restoring or rebalancing); ask again shortly"
            ))
        };
        let missing: Vec<i32> = (0..partitions).filter(|p| !local.contains(p)).collect();
        // Without an advertised address (an embedded engine), there is no fleet to ask.
        let Some(me) = self.config.properties.get("application.server") else { return Err(not_ready(&missing)) };
        let hosts = q
            .streams
            .store_hosts(crate::pull::STORE, HOSTS_TIMEOUT)
            .map_err(|e| SqlError::Execution(format!("finding the servers hosting {name}: {e}")))?;
        let mut remote: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        let mut unhosted = Vec::new();
        for p in missing {
            let host = hosts.iter().find(|h| h.partitions.contains(&p)).and_then(|h| h.server.as_ref());
            match host {
                Some(server) if server != me => remote.entry(server.clone()).or_default().push(p),
                // Assigned here but not running yet (restoring), or to no server.
                _ => unhosted.push(p),
            }
        }
        if !unhosted.is_empty() {
            return Err(not_ready(&unhosted));
        }
        Ok(remote.into_iter().map(|(server, partitions)| RemotePart { server, partitions }).collect())
    }

    /// Starts a push query: a transient application whose rows stream to the caller; it
    /// reads from the end of its source unless `SET 'auto.offset.reset'='earliest'`.
    pub(super) fn push(&mut self, query: &Query) -> Result<PushQuery> {
        let (plan, limit) = self.compile_with(query, true)?;
        let schema = plan.output_schema().clone();
        let columns = crate::planner::answer_columns(&schema)?;
        let id = format!("transient_{}_{}", plan.source().name.to_ascii_uppercase(), uuid::Uuid::new_v4().simple());
        let (tx, rx) = std::sync::mpsc::sync_channel(PUSH_BUFFER);
        let topology = plan.topology(&Sink::Rows(tx), Arc::new(AtomicU64::new(0)))?;
        let mut config = self.config.clone();
        config.properties.entry("processing.guarantee".into()).or_insert_with(|| "at_least_once".into());
        let reset = self.session.get("auto.offset.reset").cloned().unwrap_or_else(|| "latest".into());
        config.properties.insert("consumer.auto.offset.reset".into(), reset);
        let streams_config = config.streams_config(&id)?;
        let app_id = streams_config.application_id.clone();
        let fail = |e: moldau_engine::Error| SqlError::Execution(format!("push query: {e}"));
        let mut streams = KafkaStreams::new(topology, streams_config).map_err(fail)?;
        streams.start().map_err(fail)?;
        Ok(PushQuery::new(columns, rx, streams, limit, app_id, &self.config))
    }
}

/// How long finding where a table's partitions run may take.
const HOSTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The partitions a forwarded pull query names (`0,2,5`).
fn parse_partitions(text: &str) -> Result<Vec<i32>> {
    text.split(',')
        .map(|p| {
            p.trim().parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                SqlError::Semantic(format!(
                    "{}: '{text}' is not a list of partitions (like 0,2,5)",
                    crate::pull::PARTITIONS_PROPERTY
                ))
            })
        })
        .collect()
}
