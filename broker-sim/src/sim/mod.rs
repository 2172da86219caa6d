//! Deterministic simulation of the cluster core (FoundationDB-style): one seed decides every
//! delay, drop, crash and client action of a run, so a failing seed replays exactly.
//!
//! A run holds one cluster core on a simulated disk ([`crate::storage::SimFs`]) and a manual
//! clock, and simulated clients ([`clients`]) that talk to it over a simulated network: each
//! request and each response travels with a random delay (so messages of different clients are
//! reordered), and may be lost; a request not answered within [`REQUEST_TIMEOUT_MS`] is
//! abandoned with its connection (if it had not reached the broker yet it never will) and sent
//! again. Requests go through the same handler entry point as the TCP server's
//! (`protocol::handle_request`). Faults:
//! - **crash**: the broker process dies between two requests; the disk keeps what was synced
//!   (with `flush.messages=1` everything acknowledged), and a part of any unsynced tail;
//! - **crash mid-write**: the broker dies while handling a request, after its writes but before
//!   they were synced: the disk keeps a random part of them (a torn write), the client gets no
//!   answer;
//! - **zombie**: a second instance of a transactional producer starts with the same
//!   transactional id, fencing the first (which then fences it back when it re-initializes);
//! - **delay**, **drop**: on each message, as above.
//!
//! After every step the checker ([`check`]) verifies the cheap invariants; every
//! [`HEAVY_EVERY`] steps and at the end the whole-log ones; around every cleaner pass the
//! compaction one.

mod check;
mod clients;
mod member;
mod rng;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use kafka_protocol::messages::{RequestHeader, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::clock::Clock;
use crate::cluster::{BrokerInfo, ClusterCore, NewTopic};
use crate::config::BrokerConfig;
use crate::ids::Ids;
use crate::protocol::{handle_request, ConnInfo};
use crate::storage::{Dir, SimFs};
use check::Checker;
use clients::{Committer, Idempotent, Reader, Request, SimClient, Transactional};
use member::Member;
use rng::Rng;

/// A request the core has not answered yet (a JoinGroup or SyncGroup waiting for the rest of
/// its group, a fetch waiting for data or its deadline on the manual clock): polled again
/// after every step.
type Parked = std::pin::Pin<Box<dyn Future<Output = Option<ResponseKind>>>>;

/// How long a client waits for an answer before it sends its request again.
pub const REQUEST_TIMEOUT_MS: i64 = 400;
/// Steps between two whole-log checks.
pub const HEAVY_EVERY: u64 = 100;

const DATA: &str = "data";
const DATA_PARTITIONS: i32 = 3;
const KV: &str = "kv";

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Steps of the run.
    pub steps: u64,
    /// Inject faults (crashes, zombies, drops); delays are always on.
    pub faults: bool,
    /// Sync every append before acknowledging it (`flush.messages=1`). Without it a crash loses
    /// acknowledged records, which the checker must catch: the control for the checker itself.
    pub durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { steps: 1_500, faults: true, durable: true }
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps run (fewer than asked when an invariant broke).
    pub steps: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Invariant checks made, by invariant.
    pub checks: BTreeMap<&'static str, u64>,
    /// Requests answered, records read by the reader, transactions and commits: the run's work.
    pub work: BTreeMap<&'static str, u64>,
    /// The first invariant that broke, if one did.
    pub violation: Option<String>,
    /// A digest of everything the run did: the same seed gives the same digest.
    pub digest: u64,
}

/// A message on the simulated network.
enum Message {
    /// A client's request to the broker.
    Request { client: usize, attempt: u64, request: Request },
    /// The broker's answer.
    Response { client: usize, attempt: u64, response: ResponseKind },
}

/// A client and its outstanding request: (attempt number, sent at, the request).
struct Slot {
    client: Box<dyn SimClient>,
    outstanding: Option<(u64, i64, Request)>,
}

struct World {
    rng: Rng,
    options: Options,
    now: Arc<AtomicI64>,
    fs: Arc<SimFs>,
    config: BrokerConfig,
    ids: Ids,
    core: Option<Arc<ClusterCore>>,
    down_until: i64,
    /// In flight: (delivery time, sequence) -> message.
    net: BTreeMap<(i64, u64), Message>,
    seq: u64,
    slots: Vec<Slot>,
    /// Requests the core is holding: client, attempt, the handler's future.
    parked: Vec<(usize, u64, Parked)>,
    checker: Checker,
    report: Report,
}

/// Runs one seed.
pub fn run(seed: u64, options: &Options) -> Report {
    let mut w = match World::new(seed, options.clone()) {
        Ok(w) => w,
        Err(e) => {
            return Report { seed, violation: Some(format!("the cluster did not open: {e}")), ..Default::default() }
        }
    };
    for step in 0..options.steps {
        w.step();
        w.report.steps = step + 1;
        if w.checker.violation.is_some() {
            break;
        }
    }
    if w.checker.violation.is_none() {
        w.heavy_check();
    }
    w.report.checks = std::mem::take(&mut w.checker.checks);
    for (k, v) in std::mem::take(&mut w.checker.work) {
        *w.report.work.entry(k).or_default() += v;
    }
    w.report.violation = w.checker.violation.take();
    w.report
}

/// How long a client waits for an answer: a group join waits for its whole group (Kafka's
/// clients allow the rebalance timeout and more), anything else [`REQUEST_TIMEOUT_MS`].
fn timeout(api: kafka_protocol::messages::ApiKey) -> i64 {
    use kafka_protocol::messages::ApiKey;
    match api {
        ApiKey::JoinGroup | ApiKey::SyncGroup => 10_000,
        _ => REQUEST_TIMEOUT_MS,
    }
}

fn fold(digest: &mut u64, v: u64) {
    *digest = (*digest ^ v).wrapping_mul(0x0000_0100_0000_01b3);
}

impl World {
    fn new(seed: u64, options: Options) -> crate::error::Result<World> {
        let mut overrides: BTreeMap<String, String> = [
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "2"),
            ("transaction.state.log.num.partitions", "2"),
            ("offsets.topic.segment.bytes", "2048"),
            ("transaction.state.log.segment.bytes", "2048"),
            ("log.cleaner.min.cleanable.ratio", "0.2"),
            ("log.cleaner.delete.retention.ms", "300"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if options.durable {
            overrides.insert("log.flush.interval.messages".into(), "1".into());
        }
        let config = BrokerConfig::from_overrides(overrides).map_err(crate::error::Error::Config)?;
        let now = Arc::new(AtomicI64::new(1_000_000));
        let fs = Arc::new(SimFs::new());
        fs.set_now(1_000_000);
        let mut w = World {
            rng: Rng::new(seed),
            options,
            now,
            fs,
            config,
            ids: Ids::seeded(seed),
            core: None,
            down_until: 0,
            net: BTreeMap::new(),
            seq: 0,
            slots: Vec::new(),
            parked: Vec::new(),
            checker: Checker::default(),
            report: Report { seed, digest: 0xcbf2_9ce4_8422_2325, ..Default::default() },
        };
        let core = w.open()?;
        let topic = |name: &str, partitions: i32, configs: &[(&str, &str)]| NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        for t in [
            topic(DATA, DATA_PARTITIONS, &[("segment.bytes", "4096")]),
            topic(KV, 1, &[("cleanup.policy", "compact"), ("segment.bytes", "1024")]),
        ] {
            core.create_topic(t).map_err(|e| crate::error::Error::internal(e.message))?;
        }
        w.core = Some(core);
        let clients: Vec<Box<dyn SimClient>> = vec![
            Box::new(Idempotent::new(0, DATA, DATA_PARTITIONS, 50, false)),
            Box::new(Idempotent::new(1, DATA, DATA_PARTITIONS, 50, false)),
            Box::new(Idempotent::new(2, KV, 1, 8, true)),
            Box::new(Transactional::new("txn-a", 0, DATA, DATA_PARTITIONS)),
            Box::new(Transactional::new("txn-b", 0, DATA, DATA_PARTITIONS)),
            Box::new(Reader::new(DATA, DATA_PARTITIONS)),
            Box::new(Committer::new("group-1", DATA, DATA_PARTITIONS)),
        ];
        let counters: member::Counters = std::rc::Rc::new(std::cell::RefCell::new(vec![0; DATA_PARTITIONS as usize]));
        let members = (0..3).map(|i| {
            Box::new(Member::new(i, "members", DATA, DATA_PARTITIONS, counters.clone())) as Box<dyn SimClient>
        });
        let clients: Vec<Box<dyn SimClient>> = clients.into_iter().chain(members).collect();
        w.slots = clients.into_iter().map(|client| Slot { client, outstanding: None }).collect();
        Ok(w)
    }

    fn open(&self) -> crate::error::Result<Arc<ClusterCore>> {
        let brokers = vec![BrokerInfo { node_id: 1, host: "127.0.0.1".into(), port: 9092 }];
        let dir = Dir::new(Arc::clone(&self.fs) as Arc<dyn crate::storage::Fs>, "/data");
        ClusterCore::open(
            self.config.clone(),
            brokers,
            Some(dir),
            Clock::Manual(Arc::clone(&self.now)),
            self.ids.clone(),
        )
    }

    fn now(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }

    fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
        let now = self.now();
        fold(&mut self.report.digest, kind.len() as u64 ^ now as u64);
    }

    fn work(&mut self, kind: &'static str) {
        *self.report.work.entry(kind).or_default() += 1;
    }

    fn send(&mut self, message: Message) {
        let mut delay = self.rng.between(0, 20);
        if self.rng.chance(20) {
            delay += self.rng.between(50, 300);
            self.fault("delay");
        }
        self.seq += 1;
        self.net.insert((self.now() + delay, self.seq), message);
    }

    fn step(&mut self) {
        let now = self.now() + self.rng.between(1, 10);
        self.now.store(now, Ordering::Relaxed);
        self.fs.set_now(now);
        if self.core.is_none() && now >= self.down_until {
            match self.open() {
                Ok(core) => self.core = Some(core),
                Err(e) => self.checker.fail(format!("the broker did not restart: {e}")),
            }
        }
        if self.options.faults && self.core.is_some() {
            if self.rng.chance(3) {
                self.crash(false);
            } else if self.rng.chance(2) {
                self.spawn_zombie();
            }
        }
        self.clients_act(now);
        self.deliver(now);
        self.tick(now);
        self.poll_parked();
        if let Some(core) = self.core.clone() {
            self.checker.step(&core);
            if self.report.steps % HEAVY_EVERY == HEAVY_EVERY - 1 {
                self.heavy_check();
            }
        }
    }

    /// Clients without an outstanding request may send one; timed-out ones send theirs again.
    fn clients_act(&mut self, now: i64) {
        for i in 0..self.slots.len() {
            match &self.slots[i].outstanding {
                Some((attempt, sent, request)) if now - sent > timeout(request.0) => {
                    let (attempt, request) = (*attempt, request.clone());
                    // The connection is closed: a request still on the way never arrives.
                    self.net.retain(|_, m| !matches!(m, Message::Request { client, attempt: a, .. } if *client == i && *a == attempt));
                    self.work("retries");
                    self.slots[i].outstanding = Some((attempt + 1, now, request.clone()));
                    self.send(Message::Request { client: i, attempt: attempt + 1, request });
                }
                Some(_) => {}
                None => {
                    if !self.rng.chance(300) {
                        continue;
                    }
                    let next = self.slots[i].client.next(now, &mut self.rng);
                    if let Some(request) = next {
                        self.seq += 1;
                        let attempt = self.seq;
                        self.slots[i].outstanding = Some((attempt, now, request.clone()));
                        self.send(Message::Request { client: i, attempt, request });
                    }
                }
            }
        }
    }

    /// Delivers every message due by `now`.
    fn deliver(&mut self, now: i64) {
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let message = entry.remove();
            match message {
                Message::Request { client, attempt, request } => {
                    if self.options.faults && self.rng.chance(15) {
                        self.fault("drop");
                        continue;
                    }
                    let mid_write = self.options.faults && self.rng.chance(4);
                    if mid_write {
                        self.fs.fail_power(true);
                    }
                    let response = self.execute(client, attempt, request);
                    if mid_write {
                        self.crash(true);
                        self.fs.fail_power(false);
                        continue;
                    }
                    if let Some(response) = response {
                        self.send(Message::Response { client, attempt, response });
                    }
                }
                Message::Response { client, attempt, response } => {
                    if self.options.faults && self.rng.chance(15) {
                        self.fault("drop");
                        continue;
                    }
                    if self.slots[client].outstanding.as_ref().is_none_or(|(a, ..)| *a != attempt) {
                        continue;
                    }
                    self.slots[client].outstanding = None;
                    let Some(core) = self.core.clone() else { continue };
                    fold(&mut self.report.digest, client as u64 ^ (attempt << 8));
                    self.work("answers");
                    self.slots[client].client.answer(response, &core, &mut self.checker, &mut self.rng);
                }
            }
        }
    }

    /// Runs a request on the core, if it is up, through the handlers' entry point.
    /// A request the core holds (a group join waiting for its group) is parked and polled
    /// after every step until it answers.
    fn execute(&mut self, client: usize, attempt: u64, (api, version, request): Request) -> Option<ResponseKind> {
        let core = self.core.clone()?;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.seq as i32)
            .with_client_id(Some(StrBytes::from_string(self.slots[client].client.name())));
        let conn = ConnInfo { node_id: 1, client_host: "/sim".into() };
        let mut fut: Parked = Box::pin(async move { handle_request(&core, &conn, &header, version, request).await });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(response) => response,
            Poll::Pending => {
                self.work("requests held by the core");
                self.parked.push((client, attempt, fut));
                None
            }
        }
    }

    /// Polls the parked requests; the ones answered now go back to their clients.
    fn poll_parked(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut still = Vec::new();
        for (client, attempt, mut fut) in std::mem::take(&mut self.parked) {
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Some(response)) => self.send(Message::Response { client, attempt, response }),
                Poll::Ready(None) => {}
                Poll::Pending => still.push((client, attempt, fut)),
            }
        }
        self.parked = still;
    }

    /// The broker's periodic work, then maybe a cleaner pass checked on both sides.
    fn tick(&mut self, now: i64) {
        let Some(core) = self.core.clone() else { return };
        core.groups.lock().tick(now);
        core.tick_transactions();
        core.flush_due();
        if self.rng.chance(50) {
            self.checker.before_clean(&core, &[(KV, 1)]);
            if core.clean_dirtiest() {
                self.work("cleaner passes");
            }
            self.checker.after_clean(&core);
        }
    }

    /// The broker dies: every connection with it, and whatever the disk had not synced (all of
    /// it, or a torn part when `torn`).
    fn crash(&mut self, torn: bool) {
        self.fault(if torn { "crash mid-write" } else { "crash" });
        self.core = None;
        // Every connection is lost with what is on it: the clients time out and retry.
        self.net.clear();
        self.parked.clear();
        let rng = &mut self.rng;
        let loss = self.fs.crash(|unsynced| if torn { rng.below(unsynced as u64 + 1) as usize } else { 0 });
        if loss.bytes > 0 {
            *self.report.faults.entry("unsynced bytes lost").or_default() += loss.bytes;
        }
        self.down_until = self.now() + self.rng.between(10, 200);
    }

    /// A second instance of a transactional producer starts.
    fn spawn_zombie(&mut self) {
        let txn = if self.rng.chance(500) { "txn-a" } else { "txn-b" };
        let instance = self.slots.len();
        self.fault("zombie");
        self.slots.push(Slot {
            client: Box::new(Transactional::new(txn, instance, DATA, DATA_PARTITIONS)),
            outstanding: None,
        });
    }

    fn heavy_check(&mut self) {
        if let Some(core) = self.core.clone() {
            self.checker.heavy(&core, &[(DATA, DATA_PARTITIONS, false), (KV, 1, true)]);
        }
    }
}

#[cfg(test)]
mod tests;
