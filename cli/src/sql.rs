//! `moldau sql`: Moldau's SQL (ksqlDB's statements) against a cluster, from a script
//! (`-f file.sql`) or an interactive shell. With no `--bootstrap-server` it starts an embedded
//! broker-sim: one binary, nothing to set up.

mod remote;
mod render;
mod shell;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use moldau_sql::{Executor, ExecutorConfig};

/// `moldau sql` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  moldau sql\n  moldau sql -f pipeline.sql\n  moldau sql --bootstrap-server 127.0.0.1:9092 --state-dir ./state\n  moldau sql --server http://127.0.0.1:8088"
)]
pub(crate) struct SqlArgs {
    /// The cluster; without it an embedded broker-sim cluster is started for the session.
    #[arg(long, short = 'b', visible_alias = "bootstrap-servers")]
    bootstrap_server: Option<String>,
    /// A `moldau server` to send the statements to (http://host:port), instead of running
    /// them in this process.
    #[arg(long, value_name = "URL", conflicts_with_all = ["bootstrap_server", "data_dir", "state_dir", "properties"])]
    server: Option<String>,
    /// Runs the statements of this file, then exits.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Prefix of the queries' application ids (servers with one id share the queries).
    #[arg(long, default_value = "moldau_sql")]
    service_id: String,
    /// Where queries keep their state (a temporary directory by default).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// A Kafka Streams property for every query (`commit.interval.ms=200`,
    /// `processing.guarantee=at_least_once`, `consumer.*`, `producer.*`); repeatable.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// The embedded cluster's data directory (in memory without it).
    #[arg(long, value_name = "DIR", conflicts_with = "bootstrap_server")]
    data_dir: Option<PathBuf>,
}

/// `--property KEY=VALUE` arguments as a map.
pub(crate) fn properties(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut properties = BTreeMap::new();
    for p in args {
        let Some((k, v)) = p.split_once('=') else { bail!("--property {p}: expected KEY=VALUE") };
        properties.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(properties)
}

/// The cluster: `bootstrap` when given, else an embedded broker-sim (kept in `data_dir`, or in
/// memory), returned to be shut down at the end.
pub(crate) fn cluster(
    bootstrap: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> Result<(String, Option<moldau_broker_sim::Cluster>)> {
    if let Some(b) = bootstrap {
        return Ok((b.to_string(), None));
    }
    let mut b = moldau_broker_sim::Cluster::builder();
    if let Some(d) = data_dir {
        b = b.data_dir(d);
    }
    let c = b.start().context("starting the embedded broker-sim")?;
    Ok((c.bootstrap_servers().to_string(), Some(c)))
}

/// Runs `moldau sql` (blocking: the executor runs its own clients).
pub(crate) fn run(args: SqlArgs) -> Result<()> {
    if let Some(url) = &args.server {
        let client = moldau_sql::client::Client::new(url)?;
        let (status, info) = client.get("/info").with_context(|| format!("reaching the server {url}"))?;
        if status != 200 {
            bail!("the server {url} answered /info with {status}: {info}");
        }
        let interrupted = Arc::new(AtomicBool::new(false));
        let mut session = render::Session::remote(client, Arc::clone(&interrupted));
        return interact(
            &args,
            &mut session,
            &interrupted,
            &format!("server {url} (service id {})", info["service_id"]),
        );
    }
    let properties = properties(&args.properties)?;
    let (bootstrap, embedded) = cluster(args.bootstrap_server.as_deref(), args.data_dir.as_deref())?;
    let temp = match &args.state_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("creating a state directory")?),
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| temp.as_ref().expect("made above").path().to_path_buf());
    let mut config = ExecutorConfig::new(&bootstrap, &args.service_id, state_dir);
    config.properties = properties;
    let executor = Executor::new(config).context("connecting")?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut session = render::Session::new(executor, Arc::clone(&interrupted));
    let what = if embedded.is_some() {
        format!("embedded broker-sim at {bootstrap} (gone when the shell exits)")
    } else {
        format!("cluster {bootstrap}")
    };
    let result = interact(&args, &mut session, &interrupted, &what);
    session.close();
    if let Some(c) = embedded {
        c.shutdown();
    }
    result
}

/// Runs the script of `-f`, or the shell.
fn interact(args: &SqlArgs, session: &mut render::Session, interrupted: &Arc<AtomicBool>, what: &str) -> Result<()> {
    match &args.file {
        Some(path) => {
            cancel_on_ctrl_c(interrupted)?;
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            session.run_script(&text)
        }
        None => {
            println!("moldau sql: {what}");
            shell::run(session, interrupted)
        }
    }
}

/// Ctrl-C sets `flag` (which cancels a running push query) instead of ending the process.
fn cancel_on_ctrl_c(flag: &Arc<AtomicBool>) -> Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(flag))
        .context("installing the Ctrl-C handler")?;
    Ok(())
}
