//! `broker-sim`: start a Kafka-protocol cluster on consecutive ports of 127.0.0.1.

use std::path::PathBuf;

use clap::Parser;

/// Start a broker-sim cluster.
#[derive(Debug, Parser)]
#[command(name = "broker-sim", version, about = "A Kafka-protocol cluster in one process")]
struct Args {
    /// Number of brokers.
    #[arg(long, default_value_t = 1)]
    brokers: usize,
    /// Port of the first broker; broker i listens on port + i.
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Data directory; without it everything lives in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Broker config overrides, e.g. `--config num.partitions=3`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let mut builder = moldau_broker_sim::Cluster::builder().brokers(args.brokers).port(args.port);
    if let Some(dir) = args.data_dir {
        builder = builder.data_dir(dir);
    }
    for kv in &args.configs {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --config expects KEY=VALUE, got '{kv}'");
            return std::process::ExitCode::from(2);
        };
        builder = builder.config(k.trim(), v.trim());
    }
    let cluster = match builder.start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!("broker-sim: {} broker(s), cluster id {}", args.brokers, cluster.cluster_id());
    println!("bootstrap.servers={}", cluster.bootstrap_servers());
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("shutting down");
    cluster.shutdown();
    std::process::ExitCode::SUCCESS
}
