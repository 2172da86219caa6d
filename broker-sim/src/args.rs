//! The command-line flags that start a cluster, shared by the `broker-sim` binary and
//! `moldau broker`.

use std::path::PathBuf;

use crate::embedded::ClusterBuilder;
use crate::error::{Error, Result};

/// Flags that describe a cluster to start (flatten into a clap command).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// Port of the first broker; broker i listens on port + i (0 picks free ports).
    #[arg(long, default_value_t = 9092)]
    pub port: u16,
    /// Data directory; without it everything lives in memory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Broker config overrides, e.g. `--config num.partitions=3`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
}

impl BrokerArgs {
    /// A builder for the cluster these flags describe.
    ///
    /// # Errors
    /// [`Error::Config`] when a `--config` is not `KEY=VALUE` (values are checked at start).
    pub fn builder(&self) -> Result<ClusterBuilder> {
        let mut builder = crate::Cluster::builder().brokers(self.brokers).port(self.port);
        if let Some(dir) = &self.data_dir {
            builder = builder.data_dir(dir);
        }
        for kv in &self.configs {
            let (k, v) =
                kv.split_once('=').ok_or_else(|| Error::Config(format!("--config expects KEY=VALUE, got '{kv}'")))?;
            builder = builder.config(k.trim(), v.trim());
        }
        Ok(builder)
    }
}
