//! Push queries: a transient application whose rows stream to the client as they happen,
//! removed (consumer group, internal topics, local state) when the client closes it or goes
//! away.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use moldau_engine::KafkaStreams;

use crate::admin::Admin;
use crate::error::{Result, SqlError};
use crate::executor::ExecutorConfig;
use crate::statement::Column;

/// One row: a JSON value per column, in column order.
pub type Row = Vec<serde_json::Value>;

/// A running push query.
pub struct PushQuery {
    columns: Vec<Column>,
    rows: Option<Receiver<Vec<u8>>>,
    streams: Option<KafkaStreams>,
    limit: Option<usize>,
    delivered: usize,
    app_id: String,
    bootstrap: String,
    state_dir: std::path::PathBuf,
}

impl std::fmt::Debug for PushQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushQuery").field("app_id", &self.app_id).field("delivered", &self.delivered).finish()
    }
}

impl PushQuery {
    pub(crate) fn new(
        columns: Vec<Column>,
        rows: Receiver<Vec<u8>>,
        streams: KafkaStreams,
        limit: Option<usize>,
        app_id: String,
        config: &ExecutorConfig,
    ) -> Self {
        PushQuery {
            columns,
            rows: Some(rows),
            streams: Some(streams),
            limit,
            delivered: 0,
            app_id,
            bootstrap: config.bootstrap_servers.clone(),
            state_dir: config.state_dir.clone(),
        }
    }

    /// The columns of its rows.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Whether it delivered as many rows as its LIMIT asked (or was closed).
    pub fn is_done(&self) -> bool {
        self.rows.is_none() || self.limit.is_some_and(|l| self.delivered >= l)
    }

    /// The next row, waiting up to `timeout`; `None` when none came in time or the query is
    /// done. An error when the query failed.
    pub fn next_row(&mut self, timeout: Duration) -> Result<Option<Row>> {
        if self.is_done() {
            return Ok(None);
        }
        let Some(rx) = &self.rows else { return Ok(None) };
        match rx.recv_timeout(timeout) {
            Ok(bytes) => {
                self.delivered += 1;
                Ok(Some(self.row(&bytes)?))
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(e) = self.streams.as_ref().and_then(|s| s.errors().into_iter().next()) {
                    return Err(SqlError::Execution(format!("push query failed: {e}")));
                }
                Ok(None)
            }
            Err(RecvTimeoutError::Disconnected) => Err(SqlError::Execution("the push query stopped".into())),
        }
    }

    fn row(&self, bytes: &[u8]) -> Result<Row> {
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| SqlError::Execution(format!("a push query row is not a JSON object: {e}")))?;
        Ok(self.columns.iter().map(|c| object.remove(&c.name).unwrap_or(serde_json::Value::Null)).collect())
    }

    /// Stops the query and removes its consumer group, internal topics and local state.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        // The receiver first: a stream thread waiting on a full channel gets an error and
        // goes on to stop.
        self.rows = None;
        let Some(mut streams) = self.streams.take() else { return Ok(()) };
        streams.close().map_err(|e| SqlError::Execution(format!("stopping the push query: {e}")))?;
        drop(streams);
        let admin = Admin::new(&self.bootstrap)?;
        admin.delete_group(&self.app_id, Duration::from_secs(60))?;
        let prefix = format!("{}-", self.app_id);
        for topic in admin.topics()?.into_keys().filter(|t| t.starts_with(&prefix)) {
            admin.delete(&topic)?;
        }
        let dir = self.state_dir.join(&self.app_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| SqlError::Execution(format!("removing {}: {e}", dir.display())))?;
        }
        Ok(())
    }
}

impl Drop for PushQuery {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, app = %self.app_id, "cleaning up after a push query");
        }
    }
}
