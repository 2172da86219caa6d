//! `moldau`: one command for Moldau users. Today it starts broker-sim (`moldau broker`); the
//! admin tools, SQL shell, app runner and perf tools arrive with their issues.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Moldau: stream processing on Kafka, with an embedded Kafka-protocol cluster.
#[derive(Debug, Parser)]
#[command(name = "moldau", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a broker-sim cluster on consecutive ports of 127.0.0.1 (Ctrl-C stops it).
    Broker {
        /// Number of brokers.
        #[arg(long, default_value_t = 1)]
        brokers: usize,
        /// Port of the first broker.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Data directory; in memory without it.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Broker config overrides, `--config key=value`.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Broker { brokers, port, data_dir, configs } => {
            let mut builder = moldau_broker_sim::Cluster::builder().brokers(brokers).port(port);
            if let Some(dir) = data_dir {
                builder = builder.data_dir(dir);
            }
            for kv in &configs {
                let (k, v) = kv.split_once('=').with_context(|| format!("--config expects KEY=VALUE, got '{kv}'"))?;
                builder = builder.config(k.trim(), v.trim());
            }
            let cluster = builder.start().context("starting broker-sim")?;
            println!("bootstrap.servers={}", cluster.bootstrap_servers());
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            println!("shutting down");
            cluster.shutdown();
        }
    }
    Ok(())
}
