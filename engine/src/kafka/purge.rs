//! Purging repartition topics: they never expire by time (`retention.ms=-1`, so a backfill
//! of old records or an application down for long loses nothing), and instead the records the
//! downstream tasks have consumed and committed are deleted (DeleteRecords), at most once per
//! `repartition.purge.interval.ms`, as Kafka Streams does.
//!
//! The requests go out from a helper thread with its own admin client, so a stream thread
//! never waits for one; a failure is logged and the next purge covers the same records.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use crate::error::{Error, Result};

/// Records to delete: those before each `(topic, partition)`'s offset.
pub(crate) type PurgeRequest = BTreeMap<(Arc<str>, i32), i64>;

/// Deletes consumed repartition records on a helper thread.
#[derive(Debug)]
pub(crate) struct Purger {
    requests: Mutex<Option<Sender<PurgeRequest>>>,
    helper: Mutex<Option<JoinHandle<()>>>,
}

impl Purger {
    /// Starts the helper thread and its admin client.
    pub(crate) fn start(config: &StreamsConfig) -> Result<Self> {
        let cc = config.rdkafka_config("admin", &format!("{}-purge-admin", config.application_id), &[], &[]);
        let admin: AdminClient<DefaultClientContext> =
            cc.create().map_err(|e| Error::kafka("creating the purge admin client", e))?;
        let (tx, rx) = channel();
        let helper = std::thread::Builder::new()
            .name(format!("{}-purge", config.application_id))
            .spawn(move || serve(&admin, &rx))
            .map_err(|e| Error::Config(format!("starting the purge thread: {e}")))?;
        Ok(Purger { requests: Mutex::new(Some(tx)), helper: Mutex::new(Some(helper)) })
    }

    /// Asks for the records before each `(topic, partition) → offset` to be deleted.
    pub(crate) fn purge(&self, before: PurgeRequest) {
        if let Some(tx) = &*self.requests.lock() {
            let _ = tx.send(before);
        }
    }

    /// Stops the helper once it has sent what was asked.
    pub(crate) fn stop(&self) {
        self.requests.lock().take();
        if let Some(h) = self.helper.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The helper's loop: one DeleteRecords request per purge, waited for, failures logged.
fn serve(admin: &AdminClient<DefaultClientContext>, requests: &Receiver<PurgeRequest>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "no runtime for purging repartition topics; they are not purged");
            return;
        }
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    while let Ok(mut before) = requests.recv() {
        // Only the newest offsets matter: merge what queued up meanwhile.
        while let Ok(more) = requests.try_recv() {
            before.extend(more);
        }
        let mut tpl = TopicPartitionList::with_capacity(before.len());
        for ((topic, partition), offset) in &before {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(%topic, partition, error = %e, "cannot purge");
            }
        }
        match runtime.block_on(admin.delete_records(&tpl, &opts)) {
            Ok(result) => {
                for e in result.elements() {
                    if let Err(error) = e.error() {
                        tracing::warn!(topic = e.topic(), partition = e.partition(), %error, "purging a repartition topic failed");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "purging repartition topics failed; the next purge retries"),
        }
    }
}

impl crate::runtime::io::Purge for Purger {
    fn purge(&self, before: PurgeRequest) {
        Purger::purge(self, before)
    }
}
