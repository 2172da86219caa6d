//! What the executor answers about its streams, tables and queries: SHOW, DESCRIBE [EXTENDED]
//! and EXPLAIN.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::{kind_name, now, Executor, Outcome};
use crate::error::{Result, SqlError};
use crate::query::Sink;
use crate::statement::{Query, Show, SourceKind};

impl Executor {
    pub(super) fn show(&self, s: Show) -> Result<Outcome> {
        let rows = |kind: SourceKind| {
            self.catalog
                .sources()
                .filter(|d| d.kind == kind)
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.topic.clone(),
                        format!("{:?}", d.key_format).to_uppercase(),
                        format!("{:?}", d.value_format).to_uppercase(),
                    ]
                })
                .collect()
        };
        let source_columns =
            |first: &str| [first, "Kafka Topic", "Key Format", "Value Format"].iter().map(|s| s.to_string()).collect();
        Ok(match s {
            Show::Streams => Outcome::Rows { columns: source_columns("Stream Name"), rows: rows(SourceKind::Stream) },
            Show::Tables => Outcome::Rows { columns: source_columns("Table Name"), rows: rows(SourceKind::Table) },
            Show::Queries => Outcome::Rows {
                columns: ["Query ID", "Status", "Sink Name", "Query String"].iter().map(|s| s.to_string()).collect(),
                rows: self
                    .queries
                    .iter()
                    .map(|(id, q)| {
                        vec![
                            id.clone(),
                            format!("{:?}", q.streams.state()).to_uppercase(),
                            q.sink.clone(),
                            q.sql.clone(),
                        ]
                    })
                    .collect(),
            },
            Show::Topics => Outcome::Rows {
                columns: vec!["Kafka Topic".into(), "Partitions".into()],
                rows: self
                    .admin
                    .topics()?
                    .into_iter()
                    .filter(|(t, _)| !t.starts_with("__"))
                    .map(|(t, n)| vec![t, n.to_string()])
                    .collect(),
            },
        })
    }

    pub(super) fn describe(&self, name: &str, extended: bool) -> Result<Outcome> {
        let def =
            self.catalog.get(name).ok_or_else(|| SqlError::Semantic(format!("no stream or table named {name}")))?;
        let mut text = format!(
            "Name                 : {}\nType                 : {}\n",
            def.name,
            kind_name(def.kind).to_uppercase()
        );
        text.push_str(&format!(
            "Kafka topic          : {}\nKey format           : {:?}\nValue format         : {:?}\n",
            def.topic, def.key_format, def.value_format
        ));
        if let Some(t) = &def.timestamp {
            text.push_str(&format!("Timestamp column     : {t}\n"));
        }
        text.push_str("\n Field | Type\n");
        for c in &def.columns {
            let key = if !c.key {
                ""
            } else if def.kind == SourceKind::Table {
                " (primary key)"
            } else {
                " (key)"
            };
            text.push_str(&format!(" {} | {}{key}\n", c.name, c.ty));
        }
        if extended {
            let partitions = self.admin.partitions(&def.topic)?.map_or("(missing)".to_string(), |n| n.to_string());
            text.push_str(&format!("\nPartitions           : {partitions}\n"));
            for (id, q) in &self.queries {
                let role = if q.sink == def.name {
                    "written by"
                } else if q.sources.contains(&def.name) {
                    "read by"
                } else {
                    continue;
                };
                let m = q.streams.metrics();
                let mut tasks: Vec<String> = m.tasks.values().flatten().map(|t| t.to_string()).collect();
                tasks.sort();
                text.push_str(&format!("{role} query {id}: tasks here [{}]\n", tasks.join(", ")));
                text.push_str(&format!(
                    "{role} query {id}: {:?}, {} records processed, {} skipped (not matching the schema), {} records written, {} commits\n",
                    q.streams.state(),
                    m.processed,
                    q.skipped.load(std::sync::atomic::Ordering::Relaxed),
                    m.sent,
                    m.commits,
                ));
                let rate = {
                    let mut sample = q.sample.lock().unwrap_or_else(|e| e.into_inner());
                    let (at, before) = *sample;
                    let t = now();
                    let secs = t.duration_since(at).as_secs_f64();
                    *sample = (t, m.processed);
                    format!(
                        "{:.0} records/s over the last {secs:.1} s",
                        m.processed.saturating_sub(before) as f64 / secs.max(1e-3)
                    )
                };
                let topics: Vec<String> =
                    q.sources.iter().filter_map(|s| self.catalog.get(s).map(|d| d.topic.clone())).collect();
                let group = format!("{}-{id}", self.config.service_id);
                let lag = match self.admin.lag(&self.config.bootstrap_servers, &group, &topics) {
                    Ok(l) => format!("{l} records behind on {}", topics.join(", ")),
                    Err(e) => format!("lag unknown ({e})"),
                };
                text.push_str(&format!("{role} query {id}: {rate}; {lag}\n"));
                for e in q.streams.errors() {
                    text.push_str(&format!("  error: {e}\n"));
                }
            }
        }
        Ok(Outcome::Text(text))
    }

    pub(super) fn explain(&self, query: &Query) -> Result<Outcome> {
        if let Some(text) = self.explain_pull(query)? {
            return Ok(Outcome::Text(text));
        }
        let logical = self.planner.plan(&self.catalog, &query.sql)?;
        let plan = self.compile(query)?;
        let topology = plan.topology(&Sink::topic("<sink>"), Arc::new(AtomicU64::new(0)))?;
        Ok(Outcome::Text(format!("Logical plan:\n{}\n\nTopology:\n{}", logical.display_indent(), topology.describe())))
    }
}
