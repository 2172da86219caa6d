//! The stream thread's producer: output and changelog records, idempotent under
//! at-least-once, transactional (exactly-once v2) otherwise. Delivery reports record the last
//! offset written to each changelog partition (the stores' checkpoints) and the first failure.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::config::StreamsConfig;
use super::topic_handle::TopicHandles;
use crate::error::{Error, Result};
use crate::processor::Headers;
use crate::runtime::commit_plan::CommitPlan;
use crate::runtime::io::{Deliveries, OffsetCommit, Produce, CHANGELOG};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the producer sleeps between looks at its delivery reports while it waits.
const WAIT_STEP: Duration = Duration::from_micros(200);

/// Collects delivery reports.
#[derive(Debug, Default)]
pub(crate) struct DeliveryContext {
    state: Mutex<Deliveries>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let mut s = self.state.lock();
        match result {
            Ok(m) if opaque == CHANGELOG => {
                // Looked up by `&str` first: no allocation per delivered record.
                let partitions = match s.changelog.get_mut(m.topic()) {
                    Some(p) => p,
                    None => s.changelog.entry(m.topic().to_string()).or_default(),
                };
                let e = partitions.entry(m.partition()).or_insert(-1);
                *e = (*e).max(m.offset());
            }
            Ok(_) => {}
            Err((e, m)) => {
                s.failed += 1;
                if s.error.is_none() {
                    s.error = Some(format!("delivering a record to {}-{}: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

/// A transaction commit under way on a helper thread (see [`OutputProducer::start_commit`]).
pub(crate) enum Committing {
    /// The helper runs it.
    Running(JoinHandle<Result<()>>),
    /// No helper could be started; it ran on the stream thread.
    Done(Result<()>),
}

impl Committing {
    /// Whether the commit has ended, committed or failed.
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            Committing::Running(h) => h.is_finished(),
            Committing::Done(_) => true,
        }
    }
}

impl std::fmt::Debug for Committing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_finished() { "Committing(finished)" } else { "Committing(running)" })
    }
}

/// The producer of one stream thread.
pub(crate) struct OutputProducer {
    /// Handles of the topics sent to; released before the producer (see `Drop`).
    topics: TopicHandles,
    /// Shared with the helper thread of a commit under way.
    producer: Arc<BaseProducer<DeliveryContext>>,
    transactional: bool,
    in_txn: bool,
    /// An abort failed (a commit whose outcome is unknown still runs in librdkafka, say): the
    /// producer cannot begin another transaction and must be replaced.
    broken: bool,
    /// Records accepted by `send` since `take_sent` last took them.
    sent: u64,
    /// The commit under way, if any (see [`Producer::start_commit`](crate::runtime::io::Producer::start_commit)).
    committing: Option<Committing>,
}

impl std::fmt::Debug for OutputProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputProducer")
            .field("transactional", &self.transactional)
            .field("in_txn", &self.in_txn)
            .finish()
    }
}

impl OutputProducer {
    /// A producer; transactional with `transactional_id` (initialized, fencing older
    /// incarnations of the same id).
    pub(crate) fn new(config: &StreamsConfig, client_id: &str, transactional_id: Option<&str>) -> Result<Self> {
        let mut settings = vec![("enable.idempotence", "true"), ("linger.ms", "5"), ("partitioner", "murmur2_random")];
        if let Some(id) = transactional_id {
            settings.extend([("transactional.id", id), ("transaction.timeout.ms", "10000")]);
        }
        // The guarantees rest on these: a user's value is ignored.
        let cc = config.rdkafka_config("producer", client_id, &settings, &["enable.idempotence", "transactional.id"]);
        let producer: BaseProducer<DeliveryContext> =
            cc.create_with_context(DeliveryContext::default()).map_err(|e| Error::kafka("creating the producer", e))?;
        if transactional_id.is_some() {
            producer.init_transactions(TXN_TIMEOUT).map_err(|e| Error::kafka("initializing transactions", e))?;
        }
        Ok(OutputProducer {
            topics: TopicHandles::default(),
            producer: Arc::new(producer),
            transactional: transactional_id.is_some(),
            in_txn: false,
            broken: false,
            sent: 0,
            committing: None,
        })
    }

    /// Whether the producer is fenced or otherwise broken for good (librdkafka's fatal error,
    /// or an abort that failed): it must be replaced.
    pub(crate) fn is_fatal(&self) -> bool {
        if self.broken {
            return true;
        }
        match self.producer.client().fatal_error() {
            Some((code, reason)) => {
                tracing::debug!(?code, %reason, "the producer has a fatal error");
                true
            }
            None => false,
        }
    }

    /// Begins a transaction if one is needed and none is open.
    pub(crate) fn ensure_txn(&mut self) -> Result<()> {
        if self.transactional && !self.in_txn {
            self.producer.begin_transaction().map_err(|e| Error::from_kafka("begin_transaction", e))?;
            self.in_txn = true;
        }
        Ok(())
    }

    /// Sends one record with `headers`, waiting while the local queue is full.
    pub(crate) fn send(&mut self, record: &Produce<'_>, headers: &Headers) -> Result<()> {
        self.ensure_txn()?;
        if !headers.is_empty() {
            return self.send_with_headers(record, headers);
        }
        loop {
            match self.topics.produce(&self.producer, record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err(RDKafkaErrorCode::QueueFull) => self.wait_for_room(),
                // A produce call on a fenced producer fails with the fatal code at once.
                Err(e) => {
                    return Err(Error::from_code(
                        format!("producing to {}", record.topic),
                        Some(e),
                        false,
                        KafkaError::MessageProduction(e),
                    ))
                }
            }
        }
    }

    /// Sends one record with headers (rare: dead-letter records) through rdkafka's record
    /// API, which owns the headers' C structure.
    fn send_with_headers(&mut self, r: &Produce<'_>, headers: &Headers) -> Result<()> {
        let mut record = BaseRecord::with_opaque_to(r.topic, r.opaque);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        if r.timestamp >= 0 {
            record = record.timestamp(r.timestamp);
        }
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for x in headers.iter() {
            h = h.insert(Header { key: &x.key, value: x.value.as_deref() });
        }
        record = record.headers(h);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.wait_for_room();
                    record = back;
                }
                Err((e, _)) => return Err(Error::from_kafka(format!("producing to {}", r.topic), e)),
            }
        }
    }

    /// The local queue is full: delivery reports free it. Sleeps (not `poll` with a timeout,
    /// which spins: see `drain`) when none is ready.
    fn wait_for_room(&self) {
        if self.poll() > 0 {
            std::thread::sleep(WAIT_STEP);
        }
    }

    /// The records accepted since the last call.
    pub(crate) fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.sent)
    }

    /// Serves every delivery report that is ready, without waiting.
    ///
    /// rdkafka's `poll` serves one event (one produce request's reports) per call. Called
    /// once per stream-thread loop, it fell behind the broker: the unserved reports kept up to
    /// `queue.buffering.max.messages` records alive, so sends stalled on a full queue and
    /// each commit waited for reports that had long arrived.
    /// Returns the records still in flight.
    pub(crate) fn poll(&self) -> i32 {
        // Each served report frees its records; stop once a call serves none.
        let mut before = self.producer.in_flight_count();
        loop {
            self.producer.poll(Duration::ZERO);
            let after = self.producer.in_flight_count();
            if after >= before {
                return after;
            }
            before = after;
        }
    }

    /// Waits until every record sent is acknowledged or failed, serving delivery reports
    /// as they come, for `timeout` at least.
    ///
    /// Records still queued in librdkafka would first wait out `linger.ms` (5 ms): most of
    /// the wait at a 100 ms commit interval. librdkafka sends them at once while a
    /// `rd_kafka_flush` call runs, so the wait is one, on a helper thread (see
    /// [`Self::serving_reports`]).
    ///
    /// This thread sleeps in short steps between looks at the reports: rdkafka's `poll` with a
    /// timeout spins through its last millisecond (it hands librdkafka whole milliseconds, so 0
    /// once less than one is left) and never returns before its deadline, and its `flush`
    /// waits in steps of up to 100 ms. Either burned the core the broker needed to acknowledge
    /// the records, or added most of 100 ms to each commit.
    pub(crate) fn drain(&self, timeout: Duration) -> Result<()> {
        if self.poll() == 0 {
            return Ok(());
        }
        self.serving_reports(move |p| flush_acknowledged(p, timeout)).unwrap_or_else(|| self.wait_delivered(timeout))
    }

    /// Runs `call` on a helper thread while this thread serves delivery reports, and returns
    /// what it returned; `None` when no thread could be started (`call` did not run).
    ///
    /// Under rdkafka's event API only the thread that polls serves delivery reports, and a
    /// record is freed once its report is served. librdkafka's flush, and the abort of a
    /// transaction (which flushes), wait for every record to be freed: called on this thread,
    /// they would wait out their timeout.
    fn serving_reports<T: Send>(&self, call: impl FnOnce(&BaseProducer<DeliveryContext>) -> T + Send) -> Option<T> {
        std::thread::scope(|scope| {
            let producer = &self.producer;
            let helper =
                std::thread::Builder::new().name("moldau-txn-wait".into()).spawn_scoped(scope, move || call(producer));
            let helper = match helper {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a thread to wait on the producer");
                    return None;
                }
            };
            self.serve_until(|| helper.is_finished());
            Some(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    }

    /// Serves delivery reports, sleeping between looks, until `finished` (a helper thread
    /// has ended).
    fn serve_until(&self, finished: impl Fn() -> bool) {
        while !finished() {
            self.poll();
            std::thread::sleep(WAIT_STEP);
        }
    }

    /// Serves delivery reports, sleeping between looks, until none is outstanding or
    /// `timeout` has been spent waiting.
    fn wait_delivered(&self, timeout: Duration) -> Result<()> {
        let mut waited = Duration::ZERO;
        loop {
            let left = self.poll();
            if left == 0 {
                return Ok(());
            }
            if waited >= timeout {
                return Err(Error::kafka(
                    "waiting for acknowledgements",
                    format!("{left} records still unacknowledged after {timeout:?}"),
                ));
            }
            std::thread::sleep(WAIT_STEP);
            waited += WAIT_STEP;
        }
    }

    /// Takes the delivery reports gathered since the last call.
    pub(crate) fn take_deliveries(&self) -> Deliveries {
        std::mem::take(&mut *self.producer.context().state.lock())
    }

    /// Starts committing the open transaction (beginning one if none is open) on a helper
    /// thread: it waits until every record sent is acknowledged, adds `offsets` (with the
    /// consumer's `group` metadata) and commits. The caller must serve delivery reports
    /// ([`poll`](Self::poll)) and send nothing until [`finish_commit`](Self::finish_commit):
    /// it processes the next transaction's records meanwhile and holds their output.
    fn start_commit_on_helper(
        &mut self,
        plan: CommitPlan,
        group: ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<Committing> {
        self.ensure_txn()?;
        let (producer, what) = (self.producer.clone(), Arc::new((plan, group)));
        let for_helper = what.clone();
        let spawned = std::thread::Builder::new().name("moldau-txn-commit".into()).spawn(move || {
            flush_acknowledged(&producer, timeout).and_then(|()| commit_on(&producer, &for_helper.0, &for_helper.1))
        });
        match spawned {
            Ok(h) => Ok(Committing::Running(h)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start a thread to commit on; committing in line");
                // This thread serves the reports itself, so no flush is needed.
                let done = self.wait_delivered(timeout).and_then(|()| commit_on(&self.producer, &what.0, &what.1));
                Ok(Committing::Done(done))
            }
        }
    }

    /// Waits for a commit started by [`Self::start_commit_on_helper`] to end, serving
    /// delivery reports meanwhile. After a failure the transaction is still open, for
    /// [`abort_txn`](Self::abort_txn).
    fn finish_commit_of(&mut self, committing: Committing) -> Result<()> {
        let result = match committing {
            Committing::Running(h) => {
                self.serve_until(|| h.is_finished());
                h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Committing::Done(r) => r,
        };
        // Reports that arrived after the helper's last look.
        self.poll();
        result?;
        self.in_txn = false;
        Ok(())
    }

    /// Aborts the open transaction, if any (best effort: after a failure the producer is
    /// unusable, and [`is_fatal`](Self::is_fatal) says so).
    pub(crate) fn abort_txn(&mut self) {
        if let Some(committing) = self.committing.take() {
            // Committed or not, the caller drops the sealed transaction: if Kafka has it, the
            // restore from the changelog brings it back.
            if let Err(e) = self.finish_commit_of(committing) {
                tracing::debug!(error = ?e, "the commit under way failed; aborting");
            }
        }
        if self.in_txn {
            // The abort purges queued records and waits for all to be freed, which needs their
            // reports served (see `serving_reports`).
            let aborted = self.serving_reports(|p| p.abort_transaction(TXN_TIMEOUT)).unwrap_or_else(|| {
                // No helper: let every record be acknowledged first, then abort.
                let _ = self.wait_delivered(TXN_TIMEOUT);
                self.producer.abort_transaction(TXN_TIMEOUT)
            });
            if let Err(e) = aborted {
                tracing::warn!(error = %e, "abort_transaction failed; the producer will be replaced");
                self.broken = true;
            }
            self.in_txn = false;
        }
        let _ = self.take_deliveries();
    }
}

impl crate::runtime::io::Producer for OutputProducer {
    type Group = ConsumerGroupMetadata;

    fn send(&mut self, record: &Produce<'_>, headers: &Headers) -> Result<()> {
        OutputProducer::send(self, record, headers)
    }
    fn poll(&self) -> i32 {
        OutputProducer::poll(self)
    }
    fn in_txn(&self) -> bool {
        self.in_txn
    }
    fn drain(&self, timeout: Duration) -> Result<()> {
        OutputProducer::drain(self, timeout)
    }
    fn take_deliveries(&self) -> Deliveries {
        OutputProducer::take_deliveries(self)
    }
    fn take_sent(&mut self) -> u64 {
        OutputProducer::take_sent(self)
    }
    fn start_commit(&mut self, plan: CommitPlan, group: ConsumerGroupMetadata, timeout: Duration) -> Result<()> {
        debug_assert!(self.committing.is_none(), "one commit at a time");
        self.committing = Some(self.start_commit_on_helper(plan, group, timeout)?);
        Ok(())
    }
    fn committing(&self) -> bool {
        self.committing.is_some()
    }
    fn commit_ended(&self) -> bool {
        self.committing.as_ref().is_some_and(Committing::is_finished)
    }
    fn finish_commit(&mut self) -> Result<()> {
        match self.committing.take() {
            Some(c) => self.finish_commit_of(c),
            None => Ok(()),
        }
    }
    fn abort_txn(&mut self) {
        OutputProducer::abort_txn(self)
    }
    fn is_fatal(&self) -> bool {
        OutputProducer::is_fatal(self)
    }
}

/// `offsets` as librdkafka's list, each with its metadata.
pub(crate) fn offsets_list(offsets: &[OffsetCommit]) -> Result<rdkafka::TopicPartitionList> {
    let mut tpl = rdkafka::TopicPartitionList::with_capacity(offsets.len());
    for o in offsets {
        let mut e = tpl.add_partition(&o.topic, o.partition);
        e.set_offset(rdkafka::Offset::Offset(o.offset)).map_err(|e| Error::kafka("listing the offsets", e))?;
        e.set_metadata(&*o.metadata);
    }
    Ok(tpl)
}

impl Drop for OutputProducer {
    fn drop(&mut self) {
        // Topic handles must not outlive their client.
        self.topics.clear();
    }
}

/// Waits until every record `producer` sent is acknowledged (sending what lingers at once),
/// which needs another thread serving delivery reports (see
/// [`OutputProducer::serving_reports`]), for `timeout` at most.
fn flush_acknowledged(producer: &BaseProducer<DeliveryContext>, timeout: Duration) -> Result<()> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `producer` is alive for the call (borrowed); librdkafka's calls are thread-safe,
    // and under the event API this one only wakes the brokers and waits for the records to be
    // freed.
    unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
    match producer.in_flight_count() {
        0 => Ok(()),
        left => Err(Error::kafka(
            "waiting for acknowledgements",
            format!("{left} records still unacknowledged after {timeout:?}"),
        )),
    }
}

/// Commits `producer`'s open transaction with `plan`'s offsets, every record sent
/// acknowledged (their delivery reports give the changelog positions the offsets' metadata
/// records); a failed record fails the commit.
fn commit_on(producer: &BaseProducer<DeliveryContext>, plan: &CommitPlan, group: &ConsumerGroupMetadata) -> Result<()> {
    let offsets = {
        let state = producer.context().state.lock();
        if let Some(error) = state.error.clone() {
            return Err(Error::kafka("delivering the transaction's records", error));
        }
        offsets_list(&plan.offsets(&state.changelog))?
    };
    if offsets.count() > 0 {
        producer
            .send_offsets_to_transaction(&offsets, group, TXN_TIMEOUT)
            .map_err(|e| Error::from_kafka("send_offsets_to_transaction", e))?;
    }
    // A call that times out leaves the commit running in librdkafka, its outcome unknown, and
    // an abort then conflicts with it: the abort fails and the producer is replaced (see
    // `abort_txn`). It is not resumed: in an outage each call waits out its timeout, and the
    // waits added up beyond what closing the application may take.
    producer.commit_transaction(TXN_TIMEOUT).map_err(|e| Error::from_kafka("commit_transaction", e))
}
