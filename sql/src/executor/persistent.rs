//! Persistent queries: `CREATE STREAM|TABLE … AS SELECT` and `INSERT INTO … SELECT`, each
//! started as its own Moldau application writing its output topic.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use moldau_engine::KafkaStreams;

use super::{kind_name, now, Executor, Outcome, RunningQuery};
use crate::catalog::{Format, SourceDef};
use crate::error::{Result, SqlError};
use crate::query::{Output, QueryPlan, Sink};
use crate::statement::{Column, CreateAs, PropValue, Query, SourceKind};
use crate::types::SqlType;

impl Executor {
    pub(super) fn create_as(&mut self, c: CreateAs) -> Result<Outcome> {
        let what = kind_name(c.kind);
        if self.catalog.get(&c.name).is_some() && !c.or_replace {
            if c.if_not_exists {
                return Ok(Outcome::Message(format!("{what} {} exists already", c.name)));
            }
            return Err(SqlError::Semantic(format!("a stream or table named {} exists already", c.name)));
        }
        let plan = self.compile(&c.query)?;
        match (&plan, c.kind) {
            (QueryPlan::Aggregate(_), SourceKind::Stream) => {
                return Err(SqlError::Semantic(format!(
                    "{}: an aggregation makes a table; write CREATE TABLE {} AS SELECT …",
                    c.name, c.name
                )))
            }
            (QueryPlan::Join(_), SourceKind::Table) => {
                return Err(SqlError::Semantic(format!(
                    "{}: a stream–table join makes a stream; write CREATE STREAM {} AS SELECT …",
                    c.name, c.name
                )))
            }
            (QueryPlan::Join(j), SourceKind::Stream) => j.require_key(&c.name)?,
            (QueryPlan::Stateless(p), SourceKind::Table) => {
                let source = p.source();
                if source.kind == SourceKind::Stream {
                    return Err(SqlError::Semantic(format!(
                        "{}: a table from the stream {} needs a GROUP BY (its rows are the groups); without one, \
                         write CREATE STREAM {} AS SELECT …",
                        c.name, source.name, c.name
                    )));
                }
                if !p.columns().first().is_some_and(|k| k.key) {
                    let key = source.columns.iter().find(|k| k.key).map_or("", |k| k.name.as_str());
                    return Err(SqlError::Semantic(format!(
                        "{}: a table keeps the PRIMARY KEY of {}; select {key}",
                        c.name, source.name
                    )));
                }
            }
            (QueryPlan::Stateless(p), SourceKind::Stream) if p.source().kind == SourceKind::Table => {
                return Err(SqlError::Semantic(format!(
                    "{}: {} is a table; its filtered rows make a table: CREATE TABLE {} AS SELECT …",
                    c.name,
                    p.source().name,
                    c.name
                )))
            }
            _ => {}
        }
        let topic = match c.props.get("kafka_topic") {
            Some(PropValue::Text(t)) => t.clone(),
            Some(PropValue::Number(_)) => return Err(SqlError::Semantic("kafka_topic takes a quoted string".into())),
            None => c.name.to_ascii_uppercase(),
        };
        if let Some(unknown) = c.props.keys().find(|k| !crate::catalog::KNOWN_PROPS.contains(&k.as_str())) {
            return Err(SqlError::Semantic(format!("{}: unknown property '{unknown}'", c.name)));
        }
        if c.props.contains_key("timestamp") {
            return Err(SqlError::Unsupported(format!(
                "{}: WITH (timestamp=…) on a query's output (its records keep their times)",
                c.name
            )));
        }
        let (key_format, value_format) = crate::catalog::formats(&c.props)?;
        let key_format = self.output_key_format(&plan, &c.name, key_format)?;
        let value_format = value_format.unwrap_or(Format::Json);
        check_value_format(&c.name, value_format, plan.columns())?;
        let source_partitions = self.admin.partitions(plan.task_topic())?.unwrap_or(1);
        let partitions = match c.props.get("partitions") {
            Some(PropValue::Number(n)) => i32::try_from(*n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| SqlError::Semantic(format!("{}: partitions must be at least 1", c.name)))?,
            Some(PropValue::Text(_)) => return Err(SqlError::Semantic("partitions takes a number".into())),
            None => source_partitions,
        };
        let def = SourceDef {
            name: c.name.clone(),
            kind: c.kind,
            columns: plan.columns().to_vec(),
            topic,
            value_format,
            key_format,
            timestamp: None,
            partitions: Some(partitions),
            replicas: match c.props.get("replicas") {
                Some(PropValue::Number(n)) => Some(i16::try_from(*n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    SqlError::Semantic(format!("{}: replicas must be between 1 and {}", c.name, i16::MAX))
                })?),
                Some(PropValue::Text(_)) => return Err(SqlError::Semantic("replicas takes a number".into())),
                None => None,
            },
        };
        self.ensure_topic(&def)?;
        let prefix = if c.kind == SourceKind::Table { "CTAS" } else { "CSAS" };
        let id = format!("{prefix}_{}_{}", c.name.to_ascii_uppercase(), self.next_query);
        self.start(&id, plan, output_of(&def), &c.name, query_text(&c.query))?;
        self.catalog.add(def, true, false)?;
        Ok(Outcome::Message(format!("{what} {} created; query {id} running", c.name)))
    }

    pub(super) fn insert_into(&mut self, target: &str, query: &Query) -> Result<Outcome> {
        let def = self
            .catalog
            .get(target)
            .ok_or_else(|| SqlError::Semantic(format!("INSERT INTO: no stream named {target}")))?
            .clone();
        if def.kind != SourceKind::Stream {
            return Err(SqlError::Semantic(format!("INSERT INTO: {target} is a table; only streams take inserts")));
        }
        let plan = self.compile(query)?;
        if plan.source().kind == SourceKind::Table {
            return Err(SqlError::Semantic(format!(
                "INSERT INTO {target}: {} is a table; streams take inserts from streams",
                plan.source().name
            )));
        }
        if let QueryPlan::Join(j) = &plan {
            j.require_key(target)?;
        }
        self.output_key_format(&plan, target, Some(def.key_format))?;
        check_value_format(target, def.value_format, plan.columns())?;
        if matches!(plan, QueryPlan::Aggregate(_)) {
            return Err(SqlError::Semantic(format!(
                "INSERT INTO {target}: an aggregation writes a table, not a stream"
            )));
        }
        let want: Vec<_> = def.columns.iter().map(|c| (c.name.as_str(), &c.ty)).collect();
        let got: Vec<_> = plan.columns().iter().map(|c| (c.name.as_str(), &c.ty)).collect();
        if want != got {
            let show =
                |cols: &[(&str, &SqlType)]| cols.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>().join(", ");
            return Err(SqlError::Semantic(format!(
                "INSERT INTO {target}: the query's columns ({}) are not the stream's ({})",
                show(&got),
                show(&want)
            )));
        }
        let id = format!("INSERTQUERY_{}", self.next_query);
        self.start(&id, plan, output_of(&def), target, query_text(query))?;
        Ok(Outcome::Message(format!("query {id} running, writing {target}")))
    }

    /// The key format a query writes to `target`: `asked` when it computes its keys (GROUP BY,
    /// PARTITION BY), else its source's, which `asked` must then be.
    pub(super) fn output_key_format(&self, plan: &QueryPlan, target: &str, asked: Option<Format>) -> Result<Format> {
        let own = plan.key_format();
        let keys: Vec<&str> = plan.columns().iter().filter(|c| c.key).map(|c| c.name.as_str()).collect();
        match asked {
            _ if keys.len() > 1 && asked.unwrap_or(own) == Format::Kafka => Err(SqlError::Semantic(format!(
                "{target}: the key columns {} do not fit the KAFKA key format (one column); \
                     write WITH (key_format='JSON') or 'DELIMITED'",
                keys.join(", ")
            ))),
            None => Ok(own),
            Some(f) if f == own || plan.computes_keys() => Ok(f),
            Some(f) => Err(SqlError::Semantic(format!(
                "{target}: keys in {}; the query passes its source's keys on as they are, in {}. \
                 PARTITION BY the key column re-encodes them",
                f.name(),
                own.name()
            ))),
        }
    }

    /// Starts `plan` as the application `<service id>-<query id>`.
    pub(super) fn start(&mut self, id: &str, plan: QueryPlan, output: Output, sink: &str, sql: String) -> Result<()> {
        let sources = plan.sources();
        let kept = plan.clone();
        let skipped = Arc::new(AtomicU64::new(0));
        let topology = plan.topology(&Sink::Topic(output), skipped.clone())?;
        // `SET` properties apply to the queries started after them, as in ksqlDB:
        // `auto.offset.reset` to their consumers, the others as streams properties.
        let mut with_session = self.config.clone();
        // Request properties (`request.…`) are for the request, not for queries.
        for (k, v) in self.session.iter().filter(|(k, _)| !k.starts_with("request.")) {
            let k = if k == "auto.offset.reset" { "consumer.auto.offset.reset".to_string() } else { k.clone() };
            with_session.properties.insert(k, v.clone());
        }
        let config = with_session.streams_config(id)?;
        let fail = |e: moldau_engine::Error| SqlError::Execution(format!("query {id}: {e}"));
        let mut streams = KafkaStreams::new(topology, config).map_err(fail)?;
        streams.start().map_err(fail)?;
        self.next_query += 1;
        self.queries.insert(
            id.to_string(),
            RunningQuery {
                sql,
                sink: sink.to_string(),
                sources,
                plan: kept,
                streams,
                skipped,
                sample: std::sync::Mutex::new((now(), 0)),
                task_partitions: std::sync::OnceLock::new(),
            },
        );
        Ok(())
    }
}

/// The query's text as written (for SHOW QUERIES).
fn query_text(q: &Query) -> String {
    q.text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a query writes `def`: its topic, in its formats.
fn output_of(def: &SourceDef) -> Output {
    Output { topic: def.topic.clone(), key_format: Some(def.key_format), value_format: def.value_format }
}

/// The KAFKA value format holds one value column.
fn check_value_format(target: &str, format: Format, columns: &[Column]) -> Result<()> {
    let values = columns.iter().filter(|c| !c.key).count();
    if format == Format::Kafka && values != 1 {
        return Err(SqlError::Semantic(format!(
            "{target}: value_format='KAFKA' holds exactly one value column; the query writes {values}"
        )));
    }
    Ok(())
}
