//! `moldau server`: runs a service's persistent queries as one member of its fleet (every
//! server with the same service id shares them through the command topic and the engine's
//! consumer groups) and serves the HTTP API (`POST /statements`, `POST /query`, `GET /info`,
//! `GET /healthcheck`). Without `--bootstrap-server` it starts an embedded broker-sim.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use moldau_sql::server::{Server, ServerConfig};
use moldau_sql::ExecutorConfig;

/// `moldau server` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  moldau server --state-dir ./state\n  moldau server --bootstrap-server 127.0.0.1:9092 --listen 127.0.0.1:8088 --service-id orders --state-dir /var/lib/moldau\n  curl -s -X POST localhost:8088/statements -d '{\"sql\": \"SHOW STREAMS;\"}'"
)]
pub(crate) struct ServerArgs {
    /// The cluster; without it an embedded broker-sim cluster is started.
    #[arg(long, short = 'b', visible_alias = "bootstrap-servers")]
    bootstrap_server: Option<String>,
    /// The HTTP address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: std::net::SocketAddr,
    /// The service: servers with one id run the same queries as one fleet; it prefixes the
    /// command topic and the queries' application ids.
    #[arg(long, default_value = "moldau_sql")]
    service_id: String,
    /// Where this server's queries keep their state.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// A Kafka Streams property for every query (`commit.interval.ms=200`,
    /// `processing.guarantee=at_least_once`, `num.stream.threads=2`,
    /// `application.server=http://host:8088`, the URL other servers forward pull queries to,
    /// `http://<listen address>` by default); repeatable.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// The embedded cluster's data directory (in memory without it).
    #[arg(long, value_name = "DIR", conflicts_with = "bootstrap_server")]
    data_dir: Option<PathBuf>,
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(args: ServerArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing the signal handlers")?;
    }
    let properties = crate::sql::properties(&args.properties)?;
    let (bootstrap, embedded) = crate::sql::cluster(args.bootstrap_server.as_deref(), args.data_dir.as_deref())?;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating the state directory {}", args.state_dir.display()))?;
    let mut executor = ExecutorConfig::new(&bootstrap, &args.service_id, &args.state_dir);
    executor.properties = properties;
    let mut server = Server::start(ServerConfig { executor, listen: args.listen }).context("starting the server")?;
    // The line a supervisor or a test waits for.
    println!(
        "moldau server: listening on http://{} (service id {}, cluster {bootstrap})",
        server.addr(),
        args.service_id
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("shutting down");
    server.close().context("stopping the queries")?;
    drop(server);
    if let Some(c) = embedded {
        c.shutdown();
    }
    Ok(())
}
