//! The command topic: how the servers of one service id agree on their streams, tables and
//! persistent queries (ksqlDB's command topic).
//!
//! Each statement that changes them (`CREATE …`, `CREATE … AS SELECT`, `INSERT INTO`,
//! `TERMINATE`, `DROP`) is checked against the catalog, then appended to the compacted topic
//! `_moldau_<service id>_commands` (one partition: one order), and every server — the one that
//! took the statement too — applies the commands in that order from its own reader. A
//! statement answers once its own server has applied it. Persistent queries take their ids
//! from their command's offset, so every server runs the same query under the same
//! application id, and the engine's consumer groups share the partitions among them.
//!
//! Every command has its own key. Undoing one is a tombstone for its key: `DROP` retracts the
//! command that created the stream or table (and any `TERMINATE` of its query), `TERMINATE` of
//! an `INSERT INTO` retracts it, a statement that fails when applied is retracted. So the
//! compacted topic keeps exactly what a new or restarted server must replay, in its order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};
use crate::executor::{Executor, Outcome};
use crate::statement::{parse, Located, Statement};

/// How long a statement waits for its server to apply it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// How many applied commands' outcomes are kept for the statements waiting on them.
const OUTCOMES_KEPT: usize = 1024;

/// A command's value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum Command {
    /// A statement and the session properties it ran with.
    Statement {
        sql: String,
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
    /// `TERMINATE` of a query that writes a stream or table (which stays).
    Terminate { terminate: String },
}

/// What an applied command made, to undo it when its key is retracted.
#[derive(Debug, Clone)]
enum Made {
    /// A stream or table, and the query that wrote it, if any.
    Source { name: String, query: Option<String> },
    /// An `INSERT INTO` query.
    Insert(String),
    /// A `TERMINATE` of a query.
    Terminated(String),
}

/// What the reader has done.
#[derive(Default)]
struct Progress {
    /// The next offset to apply.
    next: i64,
    /// The end of the topic when the server started: replayed once `next` reaches it.
    replay_end: i64,
    /// Outcomes of the latest commands, by offset.
    outcomes: BTreeMap<i64, Result<Outcome>>,
    /// What each live command made, by key.
    made: HashMap<String, Made>,
    /// Why the reader stopped, if it did.
    failed: Option<String>,
}

struct Shared {
    progress: Mutex<Progress>,
    applied: Condvar,
    stop: AtomicBool,
}

/// A server's side of the command topic: appends statements, and applies every command to
/// the server's executor from a reader thread.
pub struct CommandLog {
    topic: String,
    executor: Arc<Mutex<Executor>>,
    producer: FutureProducer,
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CommandLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandLog").field("topic", &self.topic).finish()
    }
}

fn kafka(what: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError::Execution(format!("{what}: {e}"))
}

/// The command topic of `service_id`.
pub fn topic_of(service_id: &str) -> String {
    format!("_moldau_{service_id}_commands")
}

impl CommandLog {
    /// Opens the command topic of the executor's service id (creating it), and replays it
    /// into the executor before it returns: the server then runs what the service runs.
    pub fn start(executor: Executor) -> Result<Self> {
        let config = executor.config().clone();
        let topic = topic_of(&config.service_id);
        let replicas = config.properties.get("replication.factor").and_then(|r| r.parse().ok()).unwrap_or(1);
        executor.ensure_compacted_topic(&topic, replicas)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("log_level", "3")
            .create()
            .map_err(|e| kafka("creating the command producer", e))?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", format!("_moldau_{}_command_reader_{}", config.service_id, uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            .set("log_level", "3")
            .create()
            .map_err(|e| kafka("creating the command reader", e))?;
        let (_, end) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(30))
            .map_err(|e| kafka(&format!("reading the end of {topic}"), e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning).map_err(|e| kafka("assigning the command topic", e))?;
        consumer.assign(&tpl).map_err(|e| kafka("assigning the command topic", e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| kafka("starting the command runtime", e))?;
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress { replay_end: end, ..Progress::default() }),
            applied: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let executor = Arc::new(Mutex::new(executor));
        let reader = {
            let (shared, executor) = (Arc::clone(&shared), Arc::clone(&executor));
            std::thread::Builder::new()
                .name("moldau-sql-commands".into())
                .spawn(move || read(consumer, &executor, &shared))
                .map_err(|e| kafka("starting the command reader", e))?
        };
        let log = CommandLog { topic, executor, producer, rt, shared, reader: Some(reader) };
        log.wait_applied(end - 1, None)?;
        tracing::info!(topic = %log.topic, commands = end, "command topic replayed");
        Ok(log)
    }

    /// The executor (shared with the reader: lock it briefly).
    pub fn executor(&self) -> &Arc<Mutex<Executor>> {
        &self.executor
    }

    /// The command topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many commands this server applied (the next offset), and whether it replayed the
    /// topic's history; an error if its reader stopped.
    pub fn status(&self) -> std::result::Result<(i64, bool), String> {
        let p = self.shared.progress.lock().unwrap_or_else(|e| e.into_inner());
        match &p.failed {
            Some(e) => Err(e.clone()),
            None => Ok((p.next, p.next >= p.replay_end)),
        }
    }

    /// Runs the statements of `text` in order with `properties` as the session's (`SET` in
    /// `text` changes them for the statements after it), handing each answer to `each`:
    /// statements that change streams, tables and queries go through the command topic,
    /// the others run on this server. Stops at the first error.
    pub fn execute(
        &self,
        text: &str,
        properties: &mut BTreeMap<String, String>,
        mut each: impl FnMut(Outcome),
    ) -> Result<()> {
        for located in parse(text)? {
            let at = located.at;
            each(self.execute_one(located, properties).map_err(|e| e.within(at))?);
        }
        Ok(())
    }

    fn execute_one(&self, located: Located, properties: &mut BTreeMap<String, String>) -> Result<Outcome> {
        let lock = || self.executor.lock().unwrap_or_else(|e| e.into_inner());
        match &located.statement {
            Statement::CreateSource(_) | Statement::CreateAs(_) | Statement::InsertInto { .. } => {
                lock().check(&located.statement)?;
                let command = Command::Statement { sql: located.text.clone(), properties: properties.clone() };
                let key = new_key();
                let offset = self.append(&key, Some(&command))?;
                match self.wait_applied(offset, Some(offset))? {
                    Some(Ok(o)) => Ok(o),
                    Some(Err(e)) => {
                        // Failed here, so everywhere: retract it, so replays skip it.
                        let retracted = self.append(&key, None)?;
                        self.wait_applied(retracted, None)?;
                        Err(e)
                    }
                    None => Err(SqlError::Execution("the command's outcome was not kept".into())),
                }
            }
            Statement::Drop { name, delete_topic, .. } => {
                let (topic, keys) = {
                    let ex = lock();
                    ex.check(&located.statement)?;
                    let Some(def) = ex.catalog().get(name) else {
                        return Ok(Outcome::Message(format!("no stream or table named {name}; nothing dropped")));
                    };
                    (def.topic.clone(), self.keys_of_source(name))
                };
                if keys.is_empty() {
                    return Err(SqlError::Execution(format!("{name} was not created through the command topic")));
                }
                let mut last = 0;
                for key in &keys {
                    last = self.append(key, None)?;
                }
                self.wait_applied(last, None)?;
                if *delete_topic {
                    lock().delete_topic(&topic)?;
                    return Ok(Outcome::Message(format!("{name} dropped, topic {topic} deleted")));
                }
                Ok(Outcome::Message(format!("{name} dropped")))
            }
            Statement::Terminate { id } => {
                let id = lock().query_id(id)?;
                let insert = {
                    let p = self.progress();
                    p.made.iter().find(|(_, m)| matches!(m, Made::Insert(q) if *q == id)).map(|(k, _)| k.clone())
                };
                let offset = match insert {
                    Some(key) => self.append(&key, None)?,
                    None => self.append(&new_key(), Some(&Command::Terminate { terminate: id.clone() }))?,
                };
                self.wait_applied(offset, None)?;
                Ok(Outcome::Message(format!("query {id} terminated")))
            }
            Statement::Set { key, value } => {
                properties.insert(key.clone(), value.clone());
                Ok(Outcome::Message(format!("property '{key}' set to '{value}'")))
            }
            Statement::Unset { key } => Ok(Outcome::Message(match properties.remove(key) {
                Some(_) => format!("property '{key}' unset"),
                None => format!("property '{key}' was not set"),
            })),
            _ => {
                let mut out = None;
                lock().execute_with(&located.text, properties, |o| out = Some(o))?;
                // The executor is free again: another server answering its part of a pull
                // query may need this one's.
                match out {
                    Some(Outcome::Pull(r)) if !r.remote.is_empty() => Ok(Outcome::Pull(r.gather()?)),
                    Some(o) => Ok(o),
                    None => Err(SqlError::Execution("the statement gave no answer".into())),
                }
            }
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.shared.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys of the commands that made `name` and that terminated its query.
    fn keys_of_source(&self, name: &str) -> Vec<String> {
        let p = self.progress();
        let query = p.made.values().find_map(|m| match m {
            Made::Source { name: n, query } if n == name => Some(query.clone()),
            _ => None,
        });
        let Some(query) = query else { return Vec::new() };
        p.made
            .iter()
            .filter(|(_, m)| match m {
                Made::Source { name: n, .. } => n == name,
                Made::Terminated(q) => query.as_ref() == Some(q),
                Made::Insert(_) => false,
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Appends a command (`None`: a tombstone retracting `key`); returns its offset.
    fn append(&self, key: &str, command: Option<&Command>) -> Result<i64> {
        let value = command.map(|c| serde_json::to_vec(c).expect("commands serialize"));
        let mut record = FutureRecord::<str, Vec<u8>>::to(&self.topic).key(key).partition(0);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let delivery = self.rt.block_on(self.producer.send(record, Duration::from_secs(30)));
        match delivery {
            Ok(d) => Ok(d.offset),
            Err((e, _)) => Err(kafka(&format!("appending to {}", self.topic), e)),
        }
    }

    /// Waits until the reader applied `offset`; takes the outcome of `take` if asked.
    fn wait_applied(&self, offset: i64, take: Option<i64>) -> Result<Option<Result<Outcome>>> {
        // Waited in slices, so that the wait is bounded without reading a clock.
        const SLICE: Duration = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        let mut p = self.progress();
        loop {
            if let Some(e) = &p.failed {
                return Err(SqlError::Execution(format!("the command reader stopped: {e}")));
            }
            if p.next > offset {
                return Ok(take.and_then(|o| p.outcomes.remove(&o)));
            }
            if waited >= APPLY_TIMEOUT {
                return Err(SqlError::Execution(format!(
                    "command {offset} of {} was not applied within {} s",
                    self.topic,
                    APPLY_TIMEOUT.as_secs()
                )));
            }
            p = self.shared.applied.wait_timeout(p, SLICE).unwrap_or_else(|e| e.into_inner()).0;
            waited += SLICE;
        }
    }

    /// Stops the reader and every query (their state and offsets stay for a restart).
    pub fn close(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.executor.lock().unwrap_or_else(|e| e.into_inner()).close()
    }
}

impl Drop for CommandLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the command log");
        }
    }
}

fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The reader thread: applies every command in order until stopped.
fn read(consumer: BaseConsumer, executor: &Mutex<Executor>, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the command topic; retrying");
                continue;
            }
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let offset = m.offset();
        let mut ex = executor.lock().unwrap_or_else(|e| e.into_inner());
        let made = shared.progress.lock().unwrap_or_else(|e| e.into_inner()).made.remove(&key);
        let (outcome, now_made) = apply(&mut ex, offset, m.payload(), made);
        drop(ex);
        if let Err(e) = &outcome {
            tracing::warn!(offset, error = %e, "a command failed");
        }
        let mut p = shared.progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(made) = now_made {
            p.made.insert(key, made);
        }
        p.outcomes.insert(offset, outcome);
        while p.outcomes.len() > OUTCOMES_KEPT {
            p.outcomes.pop_first();
        }
        p.next = offset + 1;
        drop(p);
        shared.applied.notify_all();
    }
}

/// Applies one command (`None`: a retraction of what `made` made); returns its outcome and
/// what it made.
fn apply(ex: &mut Executor, offset: i64, value: Option<&[u8]>, made: Option<Made>) -> (Result<Outcome>, Option<Made>) {
    let Some(value) = value else {
        let undone = match made {
            Some(Made::Source { name, .. }) => ex.forget(&name).map(|_| format!("{name} dropped")),
            Some(Made::Insert(id)) => ex.stop_query(&id).map(|_| format!("query {id} terminated")),
            Some(Made::Terminated(id)) => Ok(format!("the TERMINATE of {id} retracted")),
            None => Ok("nothing to retract".into()),
        };
        return (undone.map(Outcome::Message), None);
    };
    let command: Command = match serde_json::from_slice(value) {
        Ok(c) => c,
        Err(e) => return (Err(SqlError::Execution(format!("command {offset} is not a command: {e}"))), None),
    };
    match command {
        Command::Terminate { terminate } => {
            // Replayed after a failed start, the query may not run: nothing to stop.
            let outcome = match ex.query_id(&terminate) {
                Ok(id) => ex.stop_query(&id),
                Err(_) => Ok(Outcome::Message(format!("query {terminate} is not running"))),
            };
            (outcome, Some(Made::Terminated(terminate)))
        }
        Command::Statement { sql, properties } => {
            let statement = match parse(&sql).map(|mut v| v.pop()) {
                Ok(Some(l)) => l.statement,
                Ok(None) => return (Err(SqlError::Execution(format!("command {offset} holds no statement"))), None),
                Err(e) => return (Err(e), None),
            };
            let made = match &statement {
                Statement::CreateSource(c) => Some(Made::Source { name: c.name.clone(), query: None }),
                Statement::CreateAs(c) => Some(Made::Source { name: c.name.clone(), query: None }),
                Statement::InsertInto { .. } => Some(Made::Insert(format!("INSERTQUERY_{offset}"))),
                _ => None,
            };
            let number = u64::try_from(offset).unwrap_or_default();
            let outcome = ex.apply(statement, number, &properties);
            let made = match (made, outcome.is_ok()) {
                (Some(Made::Source { name, .. }), true) => {
                    let query = ex.query_writing(&name);
                    Some(Made::Source { name, query })
                }
                (made, true) => made,
                (_, false) => None,
            };
            (outcome, made)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_write_commands_as_json_and_read_them_back() {
        let c = Command::Statement {
            sql: "CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON')".into(),
            properties: [("auto.offset.reset".to_string(), "earliest".to_string())].into(),
        };
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), c);
        let t = Command::Terminate { terminate: "CSAS_X_4".into() };
        assert_eq!(String::from_utf8(serde_json::to_vec(&t).unwrap()).unwrap(), r#"{"terminate":"CSAS_X_4"}"#);
        assert_eq!(serde_json::from_slice::<Command>(br#"{"terminate":"CSAS_X_4"}"#).unwrap(), t);
        assert!(serde_json::from_slice::<Command>(b"[1]").is_err());
        let bare: Command = serde_json::from_slice(br#"{"sql":"SHOW TOPICS"}"#).unwrap();
        assert_eq!(bare, Command::Statement { sql: "SHOW TOPICS".into(), properties: BTreeMap::new() });
    }
}
