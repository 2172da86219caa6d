//! `broker-sim`: start a Kafka-protocol cluster on consecutive ports of 127.0.0.1.

use clap::Parser;
use moldau_broker_sim::BrokerArgs;

/// Start a broker-sim cluster.
#[derive(Debug, Parser)]
#[command(name = "broker-sim", version, about = "A Kafka-protocol cluster in one process")]
struct Args {
    #[command(flatten)]
    broker: BrokerArgs,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let cluster = match args.broker.builder().and_then(|b| b.start()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    // The handlers are in place before the bootstrap line, which tells a supervisor (or a
    // test) the cluster is up and may be stopped: a SIGINT right after it still shuts down
    // cleanly (it used to kill the process before the handler was registered).
    let stop = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = signal(SignalKind::terminate())?;
        Ok::<_, std::io::Error>((interrupt, terminate))
    });
    let (mut interrupt, mut terminate) = match stop {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: installing the signal handlers: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!("broker-sim: {} broker(s), cluster id {}", args.broker.brokers, cluster.cluster_id());
    println!("bootstrap.servers={}", cluster.bootstrap_servers());
    rt.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    });
    println!("shutting down");
    cluster.shutdown();
    std::process::ExitCode::SUCCESS
}
