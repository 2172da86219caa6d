//! `moldau server`: runs a service's persistent queries (through the command topic, as one
//! fleet with every server of its service id) and serves an HTTP/1.1 API:
//!
//! - `POST /statements` with `{"sql": "…"}` (ksqlDB's `{"ksql": "…"}` too, and optional
//!   `"properties"` / `"streamsProperties"`): runs the statements in order; answers a JSON
//!   array with one object per statement.
//! - `POST /query` with `{"sql": "SELECT …"}`: newline-delimited JSON, first
//!   `{"columns": [{"name", "type"}]}`, then one JSON array per row; a push query's rows are
//!   streamed as they happen, until its LIMIT or until the client goes away (which ends the
//!   query and removes its consumer group and internal topics).
//! - `GET /info`, `GET /healthcheck`.
//!
//! Errors are JSON objects with a `message` (and `line` and `column` for SQL errors) and a
//! 4xx status (5xx when the cluster or the engine failed).

mod api;
mod body;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::commands::CommandLog;
use crate::error::{Result, SqlError};
use crate::executor::{Executor, ExecutorConfig};

/// What a server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The queries' configuration (cluster, service id, state directory, properties).
    pub executor: ExecutorConfig,
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
}

/// A running server: its command log and the address it listens on.
pub struct Server {
    state: Arc<api::State>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Replays the service's command topic (starting its queries), then listens.
    ///
    /// The queries advertise the server's address to the fleet as their `application.server`
    /// (pull queries are forwarded to the server hosting a partition): the property's value
    /// when given, else `http://<listen address>` unless it listens on every interface.
    pub fn start(mut config: ServerConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("moldau-server")
            .enable_all()
            .build()
            .map_err(|e| SqlError::Execution(format!("starting the server runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|e| SqlError::Execution(format!("listening on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(|e| SqlError::Execution(format!("the listening address: {e}")))?;
        let properties = &mut config.executor.properties;
        if !properties.contains_key("application.server") {
            if addr.ip().is_unspecified() {
                tracing::warn!(%addr, "listening on every interface: set application.server to the URL other servers \
                    reach this one at, or pull queries are not forwarded to it");
            } else {
                properties.insert("application.server".into(), format!("http://{addr}"));
            }
        }
        let executor = Executor::new(config.executor.clone())?;
        let log = CommandLog::start(executor)?;
        let state = Arc::new(api::State { log, config: config.executor, listen: addr });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(serve(listener, Arc::clone(&state), stopped));
        tracing::info!(%addr, "moldau server listening");
        Ok(Server { state, addr, runtime: Some(runtime), stop: Some(stop) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, then stops the queries (their state and offsets stay for a restart).
    pub fn close(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        match Arc::get_mut(&mut self.state) {
            Some(state) => state.log.close(),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the server");
        }
    }
}

/// Accepts connections until `stopped`.
async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<api::State>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // Open connections: aborted when the server stops.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => {
                connections.abort_all();
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |req| api::handle(Arc::clone(&state), req));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
