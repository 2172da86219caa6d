//! Runs statements: keeps the catalog of streams and tables, creates and deletes their topics,
//! and starts each persistent query (`CREATE STREAM … AS SELECT`, `INSERT INTO`) as its own
//! Moldau application (`KafkaStreams`) on the cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use moldau_engine::{KafkaStreams, StreamsConfig};

use crate::admin::Admin;
use crate::catalog::{Catalog, SourceDef};
use crate::error::{Result, SqlError};
use crate::planner::Planner;
use crate::push::PushQuery;
use crate::query::QueryPlan;
use crate::statement::Emit;
use crate::statement::{parse, SourceKind, Statement};

mod answers;
mod compile;
mod insert;
mod inspect;
mod persistent;

/// Where and how queries run.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The cluster.
    pub bootstrap_servers: String,
    /// Servers with the same service id run the same queries as one fleet; it prefixes each
    /// query's application id.
    pub service_id: String,
    /// Where the queries keep their state.
    pub state_dir: PathBuf,
    /// Kafka Streams properties for every query (`processing.guarantee`, `commit.interval.ms`,
    /// `num.stream.threads`, `consumer.*`, `producer.*`, …); `processing.guarantee` is
    /// `exactly_once_v2` unless set.
    pub properties: BTreeMap<String, String>,
}

impl ExecutorConfig {
    /// Defaults: exactly-once, no other properties.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        service_id: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        ExecutorConfig {
            bootstrap_servers: bootstrap_servers.into(),
            service_id: service_id.into(),
            state_dir: state_dir.into(),
            properties: BTreeMap::new(),
        }
    }

    /// The streams configuration of the query `id`.
    fn streams_config(&self, id: &str) -> Result<StreamsConfig> {
        let mut props = self.properties.clone();
        props.insert("application.id".into(), format!("{}-{id}", self.service_id));
        props.insert("bootstrap.servers".into(), self.bootstrap_servers.clone());
        props.insert("state.dir".into(), self.state_dir.display().to_string());
        props.entry("processing.guarantee".into()).or_insert_with(|| "exactly_once_v2".into());
        StreamsConfig::from_properties(&props).map_err(|e| SqlError::Execution(format!("query properties: {e}")))
    }
}

/// What a statement answers.
#[derive(Debug)]
pub enum Outcome {
    /// A message: what was created, started, dropped or terminated.
    Message(String),
    /// Rows: column names, then one row of rendered values per entry.
    Rows {
        /// Column names.
        columns: Vec<String>,
        /// Rows.
        rows: Vec<Vec<String>>,
    },
    /// A plan or description as text.
    Text(String),
    /// A push query's rows, as they happen.
    Push(PushQuery),
    /// A pull query's answer: typed columns and JSON rows.
    Pull(crate::pull::PullResult),
}

/// Rows a push query buffers before it holds its query back.
const PUSH_BUFFER: usize = 10_000;

/// A persistent query that runs.
struct RunningQuery {
    sql: String,
    sink: String,
    sources: Vec<String>,
    plan: QueryPlan,
    streams: KafkaStreams,
    skipped: Arc<AtomicU64>,
    /// When the records processed were last counted, and how many: the rate DESCRIBE shows.
    sample: std::sync::Mutex<(std::time::Instant, u64)>,
    /// Its tasks' partition count, once known (a pull query asks the cluster only once).
    task_partitions: std::sync::OnceLock<i32>,
}

/// The time now, for the processing rates DESCRIBE shows (not logic under test).
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Runs statements against one cluster.
pub struct Executor {
    config: ExecutorConfig,
    catalog: Catalog,
    planner: Planner,
    admin: Admin,
    queries: BTreeMap<String, RunningQuery>,
    next_query: u64,
    /// Properties `SET` in this session.
    session: BTreeMap<String, String>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("service_id", &self.config.service_id)
            .field("queries", &self.queries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Executor {
    /// An executor with an empty catalog.
    pub fn new(config: ExecutorConfig) -> Result<Self> {
        config.streams_config("check")?;
        let admin = Admin::new(&config.bootstrap_servers)?;
        Ok(Executor {
            config,
            catalog: Catalog::new(),
            planner: Planner::new(),
            admin,
            queries: BTreeMap::new(),
            next_query: 1,
            session: BTreeMap::new(),
        })
    }

    /// The planner, to register user functions with.
    pub fn planner_mut(&mut self) -> &mut Planner {
        &mut self.planner
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs a script, statement by statement; stops at the first error, which names the
    /// statement's position when it has one.
    pub fn execute(&mut self, text: &str) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        self.execute_each(text, |o| out.push(o))?;
        Ok(out)
    }

    /// Runs a script, handing each statement's answer to `each` as soon as it is done (a
    /// shell prints it before the next statement runs); stops at the first error.
    pub fn execute_each(&mut self, text: &str, each: impl FnMut(Outcome)) -> Result<()> {
        self.run_each(text, true, each)
    }

    /// Runs a script; a pull query's parts hosted by other servers of the fleet are asked for
    /// when `gather`, else left in its answer for the caller to gather
    /// ([`PullResult::gather`](crate::pull::PullResult::gather)) without holding the executor.
    fn run_each(&mut self, text: &str, gather: bool, mut each: impl FnMut(Outcome)) -> Result<()> {
        for s in parse(text)? {
            let at = s.at;
            let outcome = match self.execute_one(s.statement, text).map_err(|e| e.within(at))? {
                Outcome::Pull(r) if gather && !r.remote.is_empty() => Outcome::Pull(r.gather()?),
                other => other,
            };
            each(outcome);
        }
        Ok(())
    }

    /// Checks a statement against the catalog without running it: a `CREATE` names no
    /// existing stream or table (unless `OR REPLACE` / `IF NOT EXISTS`) and its definition or
    /// query compiles; an `INSERT INTO` compiles; a `DROP` names a stream or table no query
    /// uses. A server checks a statement this way before it appends it to the command topic.
    pub fn check(&self, statement: &Statement) -> Result<()> {
        let exists = |name: &str, or_replace: bool, if_not_exists: bool| {
            if self.catalog.get(name).is_some() && !or_replace && !if_not_exists {
                return Err(SqlError::Semantic(format!("a stream or table named {name} exists already")));
            }
            Ok(())
        };
        match statement {
            Statement::CreateSource(c) => {
                SourceDef::from_create(c)?;
                exists(&c.name, c.or_replace, c.if_not_exists)
            }
            Statement::CreateAs(c) => {
                exists(&c.name, c.or_replace, c.if_not_exists)?;
                self.compile(&c.query).map(|_| ())
            }
            Statement::InsertInto { target, query } => {
                if self.catalog.get(target).is_none() {
                    return Err(SqlError::Semantic(format!("INSERT INTO: no stream named {target}")));
                }
                self.compile(query).map(|_| ())
            }
            Statement::Drop { kind, name, if_exists, .. } => match self.catalog.get(name) {
                None if *if_exists => Ok(()),
                None => Err(SqlError::Semantic(format!("no {} named {name}", kind_name(*kind)))),
                Some(def) if def.kind != *kind => {
                    Err(SqlError::Semantic(format!("{name} is a {}, not a {}", kind_name(def.kind), kind_name(*kind))))
                }
                Some(_) => {
                    match self.queries.iter().find(|(_, q)| q.sink == *name || q.sources.iter().any(|s| s == name)) {
                        Some((id, _)) => Err(SqlError::Semantic(format!(
                            "{} {name} is used by query {id}; TERMINATE {id} first",
                            kind_name(*kind)
                        ))),
                        None => Ok(()),
                    }
                }
            },
            Statement::Terminate { id } => self.query_id(id).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The id of the running query `id` names (ids are case-insensitive).
    pub fn query_id(&self, id: &str) -> Result<String> {
        self.queries
            .keys()
            .find(|k| k.eq_ignore_ascii_case(id))
            .cloned()
            .ok_or_else(|| SqlError::Semantic(format!("no query with id {id} (SHOW QUERIES lists them)")))
    }

    /// The running query that writes `name`, if any.
    pub fn query_writing(&self, name: &str) -> Option<String> {
        self.queries.iter().find(|(_, q)| q.sink == name).map(|(id, _)| id.clone())
    }

    /// Runs one statement with `properties` as its session's (`SET` ones) and, when it
    /// starts a persistent query, `number` in its id: a server runs each command of the
    /// command topic so, every server giving the query the same id (the command's offset).
    pub fn apply(
        &mut self,
        statement: Statement,
        number: u64,
        properties: &BTreeMap<String, String>,
    ) -> Result<Outcome> {
        let session = std::mem::replace(&mut self.session, properties.clone());
        let next = std::mem::replace(&mut self.next_query, number);
        let result = self.execute_one(statement, "");
        self.session = session;
        self.next_query = next.max(number + 1);
        result
    }

    /// Runs `text`'s statements with `properties` as the session's, handing each answer to
    /// `each` (a server's local statements: SHOW, DESCRIBE, EXPLAIN, pull and push queries).
    /// A pull query's parts on other servers are left for the caller to gather, once it no
    /// longer holds the executor.
    pub fn execute_with(
        &mut self,
        text: &str,
        properties: &BTreeMap<String, String>,
        each: impl FnMut(Outcome),
    ) -> Result<()> {
        let session = std::mem::replace(&mut self.session, properties.clone());
        let result = self.run_each(text, false, each);
        self.session = session;
        result
    }

    /// Creates the compacted topic `topic` (one partition) unless it exists.
    pub fn ensure_compacted_topic(&self, topic: &str, replicas: i16) -> Result<()> {
        if self.admin.partitions(topic)?.is_none() {
            self.admin.create_with(topic, 1, replicas, &[("cleanup.policy", "compact")])?;
        }
        Ok(())
    }

    /// Deletes `topic`.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        self.admin.delete(topic)
    }

    /// The configuration it runs queries with.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// The engine's counters of the query that writes `sink`, if one runs.
    pub fn metrics_of(&self, sink: &str) -> Option<moldau_engine::kafka::StreamsMetrics> {
        self.queries.values().find(|q| q.sink == sink).map(|q| q.streams.metrics())
    }

    /// How many persistent queries run.
    pub fn running_queries(&self) -> usize {
        self.queries.len()
    }

    /// Stops the query `id` (as `TERMINATE`).
    pub fn stop_query(&mut self, id: &str) -> Result<Outcome> {
        self.terminate(id)
    }

    /// Forgets the stream or table `name` (its topic stays), stopping the query that writes
    /// it: a retracted command of the command topic.
    pub fn forget(&mut self, name: &str) -> Result<()> {
        if let Some(id) = self.query_writing(name) {
            self.terminate(&id)?;
        }
        self.catalog.remove(name).map(|_| ())
    }

    fn execute_one(&mut self, statement: Statement, text: &str) -> Result<Outcome> {
        let _ = text;
        match statement {
            Statement::CreateSource(c) => {
                let def = SourceDef::from_create(&c)?;
                self.ensure_topic(&def)?;
                let what = kind_name(def.kind);
                let name = def.name.clone();
                if !self.catalog.add(def, c.or_replace, c.if_not_exists)? {
                    return Ok(Outcome::Message(format!("{what} {name} exists already")));
                }
                Ok(Outcome::Message(format!("{what} {name} created")))
            }
            Statement::CreateAs(c) => self.create_as(c),
            Statement::InsertInto { target, query } => self.insert_into(&target, &query),
            Statement::Show(s) => self.show(s),
            Statement::Describe { name, extended } => self.describe(&name, extended),
            Statement::Explain(q) => self.explain(&q),
            Statement::Drop { kind, name, if_exists, delete_topic } => self.drop(kind, &name, if_exists, delete_topic),
            Statement::Terminate { id } => self.terminate(&id),
            Statement::Query(q) if q.emit == Some(Emit::Changes) => Ok(Outcome::Push(self.push(&q)?)),
            Statement::Query(q) => self.pull(&q),
            Statement::InsertValues { target, columns, values } => self.insert_values(&target, columns, values),
            Statement::Set { key, value } => {
                // Checked now, not when a query starts.
                let mut probe = self.config.clone();
                let name = if key == "auto.offset.reset" { "consumer.auto.offset.reset" } else { key.as_str() };
                probe.properties.insert(name.to_string(), value.clone());
                probe.streams_config("check")?;
                self.session.insert(key.clone(), value.clone());
                Ok(Outcome::Message(format!("property '{key}' set to '{value}'")))
            }
            Statement::Unset { key } => {
                let was = self.session.remove(&key);
                Ok(Outcome::Message(match was {
                    Some(_) => format!("property '{key}' unset"),
                    None => format!("property '{key}' was not set"),
                }))
            }
        }
    }

    /// Checks that the topic exists, creating it when `partitions` is given.
    fn ensure_topic(&self, def: &SourceDef) -> Result<i32> {
        match (self.admin.partitions(&def.topic)?, def.partitions) {
            (Some(n), Some(p)) if n != p => Err(SqlError::Semantic(format!(
                "{}: topic {} has {n} partitions, not the {p} the statement asks for",
                def.name, def.topic
            ))),
            (Some(n), _) => Ok(n),
            (None, Some(p)) => {
                self.admin.create(&def.topic, p, def.replicas.unwrap_or(1))?;
                Ok(p)
            }
            (None, None) => Err(SqlError::Semantic(format!(
                "{}: topic {} does not exist; give WITH (partitions=N) to create it",
                def.name, def.topic
            ))),
        }
    }

    fn drop(&mut self, kind: SourceKind, name: &str, if_exists: bool, delete_topic: bool) -> Result<Outcome> {
        let what = kind_name(kind);
        let Some(def) = self.catalog.get(name) else {
            if if_exists {
                return Ok(Outcome::Message(format!("no {what} named {name}; nothing dropped")));
            }
            return Err(SqlError::Semantic(format!("no {what} named {name}")));
        };
        if def.kind != kind {
            return Err(SqlError::Semantic(format!("{name} is a {}, not a {what}", kind_name(def.kind))));
        }
        if let Some((id, _)) = self.queries.iter().find(|(_, q)| q.sink == name || q.sources.iter().any(|s| s == name))
        {
            return Err(SqlError::Semantic(format!("{what} {name} is used by query {id}; TERMINATE {id} first")));
        }
        let def = self.catalog.remove(name)?;
        if delete_topic {
            self.admin.delete(&def.topic)?;
            return Ok(Outcome::Message(format!("{what} {name} dropped, topic {} deleted", def.topic)));
        }
        Ok(Outcome::Message(format!("{what} {name} dropped")))
    }

    fn terminate(&mut self, id: &str) -> Result<Outcome> {
        let key = self.queries.keys().find(|k| k.eq_ignore_ascii_case(id)).cloned();
        let Some((id, mut q)) = key.and_then(|k| self.queries.remove_entry(&k)) else {
            return Err(SqlError::Semantic(format!("no query with id {id} (SHOW QUERIES lists them)")));
        };
        q.streams.close().map_err(|e| SqlError::Execution(format!("stopping query {id}: {e}")))?;
        Ok(Outcome::Message(format!("query {id} terminated")))
    }

    /// Stops every query (their state and offsets stay for a restart).
    pub fn close(&mut self) -> Result<()> {
        let mut first = None;
        for (id, mut q) in std::mem::take(&mut self.queries) {
            if let Err(e) = q.streams.close() {
                first.get_or_insert(SqlError::Execution(format!("stopping query {id}: {e}")));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the SQL executor");
        }
    }
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "stream",
        SourceKind::Table => "table",
    }
}
