//! Connecting to a cluster: the flags every command shares, client properties from
//! `--command-config`, and a reachability check that fails within seconds instead of hanging.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

/// How long a command waits for the cluster to answer before it says it is unreachable.
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an admin operation may take.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, visible_alias = "bootstrap-servers", short = 'b', default_value = "127.0.0.1:9092", global = true)]
    pub(crate) bootstrap_server: String,
    /// Client properties file (key=value lines, # comments), e.g. security settings.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) command_config: Option<PathBuf>,
}

impl ConnArgs {
    /// A client config with the bootstrap servers and the `--command-config` properties.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_server)
            // librdkafka's own log lines would interleave with the tool's output.
            .set("log_level", "0")
            .set("socket.connection.setup.timeout.ms", "5000");
        if let Some(path) = &self.command_config {
            for (k, v) in read_properties(path)? {
                c.set(k, v);
            }
        }
        Ok(c)
    }

    /// An admin client.
    pub(crate) fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.client_config()?.create().context("creating the admin client")
    }

    /// A consumer for metadata, watermarks and offsets, in `group` if given (never subscribed).
    pub(crate) fn consumer(&self, group: Option<&str>) -> Result<BaseConsumer> {
        let mut c = self.client_config()?;
        c.set("enable.auto.commit", "false").set("enable.partition.eof", "false");
        if let Some(g) = group {
            c.set("group.id", g);
        }
        c.create().context("creating a consumer")
    }

    /// Metadata of one topic or all, failing within [`REACH_TIMEOUT`] if no broker answers.
    pub(crate) fn metadata(&self, consumer: &BaseConsumer, topic: Option<&str>) -> Result<Metadata> {
        consumer.fetch_metadata(topic, REACH_TIMEOUT).map_err(|e| unreachable(&self.bootstrap_server, e))
    }
}

/// The error for a cluster that did not answer.
pub(crate) fn unreachable(bootstrap: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot reach the cluster at {bootstrap} within {}s ({e})", REACH_TIMEOUT.as_secs())
}

/// Admin options with the operation timeout set.
pub(crate) fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)).request_timeout(Some(ADMIN_TIMEOUT))
}

/// Reads a Java-style properties file: `key=value` (or `key: value`) lines, `#`/`!` comments.
pub(crate) fn read_properties(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            bail!("{}:{}: expected key=value, got '{line}'", path.display(), n + 1);
        };
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Parses `key=value`; the error names the flag.
pub(crate) fn key_value(flag: &str, kv: &str) -> Result<(String, String)> {
    match kv.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => bail!("{flag} expects key=value, got '{kv}'"),
    }
}
