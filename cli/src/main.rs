//! `moldau`: one command for Moldau users. Today it starts broker-sim (`moldau broker`); the
//! admin tools, SQL shell, app runner and perf tools arrive with their issues.

use anyhow::Context;
use clap::{Parser, Subcommand};
use moldau_broker_sim::BrokerArgs;

// The broker's request handling allocates per request; mimalloc is cheaper than glibc's
// allocator there and in every thread that frees what another allocated. The workspace turns
// on its `override` feature, so librdkafka's and RocksDB's allocations go to it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Broker(BrokerArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Broker(args) => {
            let cluster = args.builder()?.start().context("starting broker-sim")?;
            println!("bootstrap.servers={}", cluster.bootstrap_servers());
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            println!("shutting down");
            cluster.shutdown();
        }
    }
    Ok(())
}
