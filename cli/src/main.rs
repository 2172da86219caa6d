//! `moldau`: one command for Moldau users: broker-sim (`moldau broker`) and the Kafka tools
//! people know (`topics`, `produce`, `consume`, `groups`, `configs`, `perf`), against
//! broker-sim or any Kafka-protocol cluster, through rdkafka.
//!
//! Errors are one line on stderr (`error: ...`) and exit code 1; usage errors exit 2.

mod client;
mod configs;
mod consume;
mod ffi;
mod groups;
mod output;
mod perf;
mod produce;
mod raw;
mod server;
mod sql;
mod topics;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
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
    #[command(
        after_help = "Examples:\n  moldau broker --brokers 3 --port 9092 --data-dir ./data\n  moldau broker --port 0 --config num.partitions=6"
    )]
    Broker(BrokerArgs),
    /// Create, list, describe, alter and delete topics (kafka-topics.sh).
    Topics(topics::TopicsArgs),
    /// Produce lines from stdin or a file (kafka-console-producer.sh).
    Produce(produce::ProduceArgs),
    /// Print records of a topic (kafka-console-consumer.sh, kcat -C).
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups (kafka-consumer-groups.sh).
    Groups(groups::GroupsArgs),
    /// Describe and change topic and broker configs (kafka-configs.sh).
    Configs(configs::ConfigsArgs),
    /// Run SQL (ksqlDB's statements): a shell, or a script with -f; embedded broker-sim
    /// unless --bootstrap-server is given.
    Sql(sql::SqlArgs),
    /// Run a service's SQL queries and serve its HTTP API (ksqlDB's server); servers with one
    /// --service-id share the queries as a fleet.
    Server(server::ServerArgs),
    /// Producer and consumer benchmarks (kafka-producer-perf-test.sh, kafka-consumer-perf-test.sh).
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  moldau completions bash > /etc/bash_completion.d/moldau")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = Cli::parse();
    // SQL runs its own clients, blocking: outside the command runtime.
    let cli = match cli.command {
        Command::Sql(args) => {
            if let Err(e) = sql::run(args) {
                fail(e);
            }
            return;
        }
        Command::Server(args) => {
            if let Err(e) = server::run(args) {
                fail(e);
            }
            return;
        }
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => fail(anyhow::anyhow!("starting the runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        fail(e);
    }
}

/// Prints `e` as one line (its causes joined) and exits 1.
fn fail(e: anyhow::Error) -> ! {
    let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut line = causes.join(": ");
    line.retain(|c| c != '\n');
    eprintln!("error: {line}");
    std::process::exit(1);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Broker(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
                )
                .init();
            let cluster = args.builder()?.start().context("starting broker-sim")?;
            // The handlers are in place before the bootstrap line that tells a supervisor or
            // a test the cluster is up, so a signal right after it still shuts down cleanly.
            use tokio::signal::unix::{signal, SignalKind};
            let mut interrupt = signal(SignalKind::interrupt()).context("installing the signal handlers")?;
            let mut terminate = signal(SignalKind::terminate()).context("installing the signal handlers")?;
            println!("broker-sim: {} broker(s), cluster id {}", args.brokers, cluster.cluster_id());
            println!("bootstrap.servers={}", cluster.bootstrap_servers());
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            println!("shutting down");
            cluster.shutdown();
            Ok(())
        }
        Command::Topics(a) => topics::run(a).await,
        Command::Produce(a) => produce::run(a).await,
        Command::Consume(a) => consume::run(a).await,
        Command::Groups(a) => groups::run(a).await,
        Command::Configs(a) => configs::run(a).await,
        Command::Perf(c) => perf::run(c).await,
        Command::Sql(_) | Command::Server(_) => unreachable!("run before the runtime starts"),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "moldau", &mut std::io::stdout());
            Ok(())
        }
    }
}
