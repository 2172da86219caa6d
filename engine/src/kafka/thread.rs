//! A stream thread: the rdkafka clients of one thread (a group consumer, a producer, a
//! restore consumer) behind the runtime core's traits, and the loop that drives the core
//! ([`Core::turn`]) until the application closes.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerGroupMetadata};

use super::clock::SystemClock;
use super::config::ProcessingGuarantee;
use super::consumer::GroupConsumer;
use super::group::{assignment_strategy, GroupContext};
use super::producer::OutputProducer;
use super::purge::Purger;
use super::restore::Restorer;
use crate::error::{Error, Result};
use crate::runtime::core::{Core, Io, Parts, ThreadSpec};
use crate::runtime::stores::RocksStores;

/// The rdkafka world of one stream thread.
pub(crate) struct KafkaIo {
    spec: ThreadSpec,
    eos: bool,
}

impl Io for KafkaIo {
    type Group = ConsumerGroupMetadata;
    type Consumer = GroupConsumer;
    type Producer = OutputProducer;
    type Restore = Restorer;
    type Purge = Arc<Purger>;
    type Clock = SystemClock;
    type Stores = RocksStores;

    fn new_producer(&mut self) -> Result<OutputProducer> {
        make_producer(&self.spec, self.eos)
    }
}

/// Runs thread `spec` until shutdown, with `purger` for its repartition topics; records a
/// fatal error in the shared state.
pub(crate) fn run(spec: ThreadSpec, purger: Arc<Purger>) {
    let shared = spec.shared.clone();
    let index = spec.index;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut core = Core::new(spec.clone(), parts(spec, purger)?);
        let r = (|| {
            while !core.shutting_down() {
                core.turn()?;
            }
            core.final_commit()
        })();
        core.close(r.is_ok());
        core.consumer_mut().leave();
        // Closed mid-way (a restore interrupted): the open transaction was rolled back, and
        // that is a clean stop, not an error.
        r.or_else(|e| if matches!(e, Error::ShuttingDown) { Ok(()) } else { Err(e) })
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(Error::processing("stream thread", format!("panicked: {what}")))
    });
    if let Err(e) = result {
        tracing::error!(thread = index, error = %e, "stream thread stopped");
        shared.errors.lock().push(Arc::new(e));
    }
    shared.tasks.lock().remove(&index);
    shared.restoring.lock().remove(&index);
}

/// Thread `spec`'s clients: its group consumer (subscribed), producer and restorer.
fn parts(spec: ThreadSpec, purger: Arc<Purger>) -> Result<Parts<KafkaIo>> {
    let config = &spec.config;
    let app = &config.application_id;
    let client_id = client_id(&spec);
    let settings = [
        ("group.id", app.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        ("partition.assignment.strategy", assignment_strategy(&spec.topology)),
        // librdkafka pauses a partition's fetching for this long once its local queue passes
        // `queued.min.messages` or `queued.max.messages.kbytes`; at the 1 s default a fast
        // stream thread drains the queue and then waits (4× less throughput measured).
        ("fetch.queue.backoff.ms", "10"),
        // Members learn that the group is rebalancing from heartbeat answers. Under
        // cooperative rebalancing the partitions a member gives up stay unowned until every
        // member has rejoined for the second round; at librdkafka's 3 s default a thread
        // joining its process's group left half the partitions idle for ~3.7 s (the
        // two-thread windowed benchmark: 115-130k rec/s, ~210k at 1 s).
        ("heartbeat.interval.ms", "1000"),
    ];
    // The runtime's correctness rests on these: a user's value is ignored.
    let fixed = [
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "partition.assignment.strategy",
        "isolation.level",
    ];
    let consumer_id = super::hosts::consumer_client_id(&format!("{client_id}-consumer"), config);
    let cc = config.rdkafka_config("consumer", &consumer_id, &settings, &fixed);
    let consumer: BaseConsumer<GroupContext> =
        cc.create_with_context(GroupContext::default()).map_err(|e| Error::kafka("creating the consumer", e))?;
    let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let producer = make_producer(&spec, eos)?;
    let restorer = Restorer::new(config, &format!("{client_id}-restore-consumer"))?;
    let topics = spec.names.consumed();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).map_err(|e| Error::kafka("subscribing", e))?;
    let index = spec.index;
    let stores = RocksStores::new(config.state_dir.join(app), spec.budget.clone());
    Ok(Parts {
        io: KafkaIo { spec, eos },
        consumer: GroupConsumer::new(consumer, index),
        producer,
        restorer,
        purger,
        clock: SystemClock,
        stores,
    })
}

/// The client id prefix of thread `spec`.
fn client_id(spec: &ThreadSpec) -> String {
    format!("{}-{}-StreamThread-{}", spec.config.application_id, spec.process_id, spec.index)
}

/// Thread `spec`'s producer: transactional under exactly-once, with the transactional id
/// `<application.id>-<process id>-<thread>` (stable across restarts of the instance).
fn make_producer(spec: &ThreadSpec, eos: bool) -> Result<OutputProducer> {
    let txn_id = format!("{}-{}-{}", spec.config.application_id, spec.process_id, spec.index);
    OutputProducer::new(&spec.config, &format!("{}-producer", client_id(spec)), eos.then_some(txn_id.as_str()))
}
