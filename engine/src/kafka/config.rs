//! `StreamsConfig`: what an application needs to run against Kafka, with Kafka Streams' names
//! and defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Delivery guarantee from input topics to output topics (`processing.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Offsets are committed after the output is acknowledged: nothing is lost, a crash can
    /// repeat output (`at_least_once`).
    AtLeastOnce,
    /// Output, changelog records and input offsets commit in one Kafka transaction per stream
    /// thread (`exactly_once_v2`).
    ExactlyOnceV2,
}

impl ProcessingGuarantee {
    /// Parses `at_least_once` or `exactly_once_v2` (`exactly_once` is accepted as v2).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
            "exactly_once_v2" | "exactly_once" => Ok(ProcessingGuarantee::ExactlyOnceV2),
            other => Err(Error::Config(format!(
                "processing.guarantee '{other}' is not one of at_least_once, exactly_once_v2"
            ))),
        }
    }
}

/// What to do with an input record whose key or value does not deserialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeserializationHandler {
    /// Log it and go on with the next record (the default).
    LogAndContinue,
    /// Stop the stream thread with the error.
    LogAndFail,
    /// Send the raw record to this topic (created if missing) with headers naming the error
    /// and its origin, then go on.
    DeadLetter(String),
}

impl DeserializationHandler {
    /// What a task does with the records its processors reject.
    pub(crate) fn bad_input(&self) -> crate::processor::context::BadInputPolicy {
        use crate::processor::context::BadInputPolicy;
        match self {
            DeserializationHandler::LogAndContinue => BadInputPolicy::Skip,
            DeserializationHandler::LogAndFail => BadInputPolicy::Fail,
            DeserializationHandler::DeadLetter(t) => BadInputPolicy::DeadLetter(t.as_str().into()),
        }
    }
}

/// What to do when a processor fails on a record, or when the producer cannot deliver a record
/// (at-least-once only: under exactly-once a failed delivery always aborts the transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorHandler {
    /// Stop the stream thread with the error (the default).
    Fail,
    /// Log it and go on.
    LogAndContinue,
}

/// Configuration of a [`KafkaStreams`](super::KafkaStreams) application.
///
/// Built in code, or from Kafka Streams' property names (a `.properties` file, say); values
/// that cannot work are refused with an error naming the property:
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::Duration;
///
/// use moldau_engine::{ProcessingGuarantee, StreamsConfig};
///
/// let config = StreamsConfig::new("orders-app", "localhost:9092")
///     .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
///     .with_threads(2)
///     .with_state_dir("/var/lib/orders-app")
///     .with_property("consumer.fetch.max.bytes", "8388608");
/// config.validate()?;
/// assert_eq!(config.effective_commit_interval(), Duration::from_millis(100), "exactly-once's default");
///
/// let props: BTreeMap<String, String> = [
///     ("application.id", "orders-app"),
///     ("bootstrap.servers", "localhost:9092"),
///     ("processing.guarantee", "exactly_once_v2"),
///     ("commit.interval.ms", "250"),
/// ]
/// .into_iter()
/// .map(|(k, v)| (k.to_string(), v.to_string()))
/// .collect();
/// let config = StreamsConfig::from_properties(&props)?;
/// assert_eq!(config.processing_guarantee, ProcessingGuarantee::ExactlyOnceV2);
/// assert_eq!(config.effective_commit_interval(), Duration::from_millis(250));
///
/// let mut bad = props.clone();
/// bad.insert("num.stream.threads".into(), "two".into());
/// let e = StreamsConfig::from_properties(&bad).unwrap_err();
/// assert_eq!(e.to_string(), "configuration: num.stream.threads 'two' is not a non-negative integer");
/// # Ok::<(), moldau_engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: consumer group id, prefix of internal topics and of transactional ids.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `num.stream.threads` (default 1).
    pub num_stream_threads: usize,
    /// `processing.guarantee` (default at-least-once).
    pub processing_guarantee: ProcessingGuarantee,
    /// `commit.interval.ms`; `None` means 100 ms under exactly-once and 30 s under
    /// at-least-once.
    pub commit_interval: Option<Duration>,
    /// `state.dir`: stores live in `<state.dir>/<application.id>/<task>/<store>`.
    pub state_dir: PathBuf,
    /// `max.task.idle.ms`: how long a task with several input partitions waits for an empty
    /// partition before processing the others out of timestamp order (default 0).
    pub max_task_idle: Duration,
    /// Replication factor of the internal topics it creates (default 1).
    pub replication_factor: i32,
    /// Bytes of RocksDB block cache and write buffers shared by all stores of the process.
    pub memory_budget_bytes: usize,
    /// Deserialization error handling.
    pub deserialization_handler: DeserializationHandler,
    /// Processing error handling.
    pub processing_handler: ErrorHandler,
    /// Production error handling (at-least-once).
    pub production_handler: ErrorHandler,
    /// `repartition.purge.interval.ms`: how often the records of repartition topics that the
    /// downstream tasks consumed and committed are deleted (default 30 s).
    pub repartition_purge_interval: Duration,
    /// `max.held.records`: how many records' output, changelog records and store writes a
    /// stream thread holds while an exactly-once commit is under way before it stops polling
    /// and processing until the commit ends (default 50,000; see
    /// `StreamsMetrics::commit_stalls`).
    pub max_held_records: u64,
    /// `application.server`: the `host:port` (or URL) where this instance answers interactive
    /// queries, advertised to the other instances through the group (see
    /// [`KafkaStreams::store_hosts`](crate::KafkaStreams::store_hosts)).
    pub application_server: Option<String>,
    /// Extra librdkafka properties: `consumer.<name>` for the consumers, `producer.<name>` for
    /// the producer, a plain `<name>` for every client.
    pub client_properties: BTreeMap<String, String>,
}

impl StreamsConfig {
    /// A configuration with the defaults, state under `./moldau-state`.
    pub fn new(application_id: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        StreamsConfig {
            application_id: application_id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: None,
            state_dir: PathBuf::from("moldau-state"),
            max_task_idle: Duration::ZERO,
            replication_factor: 1,
            memory_budget_bytes: 256 << 20,
            deserialization_handler: DeserializationHandler::LogAndContinue,
            processing_handler: ErrorHandler::Fail,
            production_handler: ErrorHandler::Fail,
            repartition_purge_interval: Duration::from_secs(30),
            max_held_records: 50_000,
            application_server: None,
            client_properties: BTreeMap::new(),
        }
    }

    /// Builds a configuration from Kafka Streams property names (`application.id`,
    /// `bootstrap.servers`, `processing.guarantee`, `num.stream.threads`, `commit.interval.ms`,
    /// `state.dir`, `max.task.idle.ms`, `replication.factor`, `repartition.purge.interval.ms`,
    /// `default.deserialization.exception.handler` = continue | fail | dlq:<topic>,
    /// `consumer.*`, `producer.*`). Unknown names are passed to librdkafka as they are.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self> {
        let required =
            |k: &str| props.get(k).cloned().ok_or_else(|| Error::Config(format!("the property '{k}' is required")));
        let number = |k: &str, v: &str| {
            v.parse::<u64>().map_err(|_| Error::Config(format!("{k} '{v}' is not a non-negative integer")))
        };
        let mut c = StreamsConfig::new(required("application.id")?, required("bootstrap.servers")?);
        for (k, v) in props {
            match k.as_str() {
                "application.id" | "bootstrap.servers" => {}
                "processing.guarantee" => c.processing_guarantee = ProcessingGuarantee::parse(v)?,
                "num.stream.threads" => c.num_stream_threads = number(k, v)? as usize,
                "commit.interval.ms" => c.commit_interval = Some(Duration::from_millis(number(k, v)?)),
                "state.dir" => c.state_dir = PathBuf::from(v),
                "max.task.idle.ms" => c.max_task_idle = Duration::from_millis(number(k, v)?),
                "replication.factor" => c.replication_factor = number(k, v)? as i32,
                "application.server" => c.application_server = Some(v.clone()),
                "repartition.purge.interval.ms" => c.repartition_purge_interval = Duration::from_millis(number(k, v)?),
                "max.held.records" => c.max_held_records = number(k, v)?.max(1),
                "default.deserialization.exception.handler" => {
                    c.deserialization_handler = match v.as_str() {
                        "continue" => DeserializationHandler::LogAndContinue,
                        "fail" => DeserializationHandler::LogAndFail,
                        dlq if dlq.starts_with("dlq:") && dlq.len() > 4 => {
                            DeserializationHandler::DeadLetter(dlq[4..].to_string())
                        }
                        other => {
                            return Err(Error::Config(format!(
                                "{k} '{other}' is not one of continue, fail, dlq:<topic>"
                            )))
                        }
                    }
                }
                _ => {
                    c.client_properties.insert(k.clone(), v.clone());
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets the processing guarantee.
    pub fn with_guarantee(mut self, g: ProcessingGuarantee) -> Self {
        self.processing_guarantee = g;
        self
    }

    /// Sets the state directory.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Sets the number of stream threads.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.num_stream_threads = n;
        self
    }

    /// Sets the commit interval.
    pub fn with_commit_interval(mut self, d: Duration) -> Self {
        self.commit_interval = Some(d);
        self
    }

    /// Sets how often consumed repartition records are deleted.
    pub fn with_repartition_purge_interval(mut self, d: Duration) -> Self {
        self.repartition_purge_interval = d;
        self
    }

    /// Sets the `application.server` this instance advertises for interactive queries.
    pub fn with_application_server(mut self, server: impl Into<String>) -> Self {
        self.application_server = Some(server.into());
        self
    }

    /// Sets a librdkafka property (`consumer.`/`producer.` prefixes select one client).
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_properties.insert(key.into(), value.into());
        self
    }

    /// The commit interval in effect.
    pub fn effective_commit_interval(&self) -> Duration {
        self.commit_interval.unwrap_or(match self.processing_guarantee {
            ProcessingGuarantee::ExactlyOnceV2 => Duration::from_millis(100),
            ProcessingGuarantee::AtLeastOnce => Duration::from_secs(30),
        })
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        let id = &self.application_id;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(Error::Config(format!(
                "application.id '{id}' must be non-empty and use only ASCII letters, digits, '.', '_' and '-' \
                 (it prefixes topic names)"
            )));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        if self.num_stream_threads == 0 {
            return Err(Error::Config("num.stream.threads must be at least 1".into()));
        }
        if self.replication_factor < 1 {
            return Err(Error::Config("replication.factor must be at least 1".into()));
        }
        if let DeserializationHandler::DeadLetter(t) = &self.deserialization_handler {
            if t.is_empty() {
                return Err(Error::Config("the dead-letter topic name is empty".into()));
            }
        }
        if let Some(server) = &self.application_server {
            if server.is_empty() || server.chars().any(|c| c.is_whitespace() || c.is_control() || c == '|') {
                return Err(Error::Config(format!(
                    "application.server '{server}' must be a non-empty host:port or URL without spaces or '|'"
                )));
            }
        }
        Ok(())
    }

    /// An rdkafka client configuration for one client kind (`consumer`, `producer`, `admin`):
    /// the bootstrap servers, `client_id`, quiet librdkafka logging and the engine's
    /// `settings`, then the user's properties for that kind, except the `fixed` ones the
    /// engine relies on.
    pub(crate) fn rdkafka_config(
        &self,
        kind: &str,
        client_id: &str,
        settings: &[(&str, &str)],
        fixed: &[&str],
    ) -> rdkafka::ClientConfig {
        let mut cc = rdkafka::ClientConfig::new();
        cc.set("bootstrap.servers", &self.bootstrap_servers).set("client.id", client_id).set("log_level", "3");
        for (k, v) in settings {
            cc.set(*k, *v);
        }
        for (k, v) in self.client_props(kind) {
            if !fixed.contains(&k.as_str()) {
                cc.set(k, v);
            }
        }
        cc
    }

    /// Properties for one client kind (`consumer`, `producer` or `admin`): plain ones, then
    /// those with the kind's prefix (stripped). Another kind's prefixed properties are left out.
    fn client_props(&self, kind: &str) -> Vec<(String, String)> {
        let prefix = format!("{kind}.");
        let prefixed = |k: &str| ["consumer.", "producer.", "admin."].iter().any(|p| k.starts_with(p));
        let mut out: Vec<(String, String)> =
            self.client_properties.iter().filter(|(k, _)| !prefixed(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        out.extend(
            self.client_properties
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone()))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_properties_and_reject_bad_values() {
        let mut p = BTreeMap::new();
        p.insert("application.id".to_string(), "wc".to_string());
        p.insert("bootstrap.servers".to_string(), "127.0.0.1:9092".to_string());
        p.insert("processing.guarantee".to_string(), "exactly_once_v2".to_string());
        p.insert("consumer.session.timeout.ms".to_string(), "6000".to_string());
        p.insert("default.deserialization.exception.handler".to_string(), "dlq:bad".to_string());
        let c = StreamsConfig::from_properties(&p).unwrap();
        assert_eq!(c.processing_guarantee, ProcessingGuarantee::ExactlyOnceV2);
        assert_eq!(c.effective_commit_interval(), Duration::from_millis(100));
        assert_eq!(c.deserialization_handler, DeserializationHandler::DeadLetter("bad".into()));
        assert_eq!(c.client_props("consumer"), vec![("session.timeout.ms".to_string(), "6000".to_string())]);
        assert!(c.client_props("producer").is_empty());
        // One client's prefixed properties never reach another (librdkafka would refuse them).
        let c = c.with_property("producer.linger.ms", "1").with_property("admin.retries", "3");
        assert!(c.client_props("consumer").iter().all(|(k, _)| k != "linger.ms" && k != "retries"));
        assert_eq!(c.client_props("admin"), vec![("retries".to_string(), "3".to_string())]);
        assert!(c.client_props("producer").contains(&("linger.ms".to_string(), "1".to_string())));

        p.insert("processing.guarantee".to_string(), "twice".to_string());
        let e = StreamsConfig::from_properties(&p).unwrap_err().to_string();
        assert!(e.contains("'twice'"), "{e}");
        p.remove("processing.guarantee");
        p.insert("num.stream.threads".to_string(), "-1".to_string());
        assert!(StreamsConfig::from_properties(&p).unwrap_err().to_string().contains("num.stream.threads"));
        p.remove("num.stream.threads");
        p.insert("application.id".to_string(), "a b".to_string());
        assert!(StreamsConfig::from_properties(&p).unwrap_err().to_string().contains("application.id"));
        p.remove("application.id");
        assert!(StreamsConfig::from_properties(&p).unwrap_err().to_string().contains("required"));
    }
}
