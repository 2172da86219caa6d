//! The invariants the simulation checks, and what it has learned to check them against.
//!
//! Checked after every step: the high watermark of every partition never decreases, the last
//! stable offset never passes it, and every acknowledged offset commit is still there and never
//! went back. Checked every [`super::HEAVY_EVERY`] steps and at the end, over the whole logs:
//! each producer's records appear once each, in sequence order, and every acknowledged batch is
//! there; a fenced producer never wrote after its fence; everything a read_committed reader was
//! given belongs to a committed transaction. Checked around every cleaner pass: a compacted
//! partition keeps the latest value of every key.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::records::Record;

use crate::cluster::ClusterCore;

type Tp = (String, i32);
/// A producer's batches acknowledged on a partition: (producer id, topic, partition) ->
/// (epoch, first sequence, base offset) of each.
type Acked = BTreeMap<(i64, String, i32), Vec<(i16, i32, i64)>>;
/// The latest record of each key: key -> (offset, value).
type Latest = BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>;

/// What the checker knows and has counted.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Checks made, by kind.
    pub(crate) checks: BTreeMap<&'static str, u64>,
    /// The first invariant broken.
    pub(crate) violation: Option<String>,
    /// Work the clients reported.
    pub(crate) work: BTreeMap<&'static str, u64>,
    high_watermarks: BTreeMap<Tp, i64>,
    /// (group, topic, partition) -> the last acknowledged commit.
    commits: BTreeMap<(String, String, i32), i64>,
    /// Acknowledged batches: (producer id, topic, partition) -> (epoch, first sequence, base
    /// offset).
    acked: Acked,
    /// Fences: producer id, the epoch that fenced older ones, log end offsets at that time.
    fences: Vec<(i64, i16, BTreeMap<Tp, i64>)>,
    /// What read_committed readers were given: partition, offset, producer id (transactional
    /// records only).
    delivered: Vec<(Tp, i64, i64)>,
    /// Latest record per key of each compacted partition before a cleaner pass.
    before_clean: BTreeMap<Tp, Latest>,
}

fn records(core: &ClusterCore, topic: &str, p: i32) -> Vec<Record> {
    core.partition(topic, p)
        .map(|part| {
            let log = part.log.lock();
            log.read_all_records(log.log_start_offset()).unwrap_or_default()
        })
        .unwrap_or_default()
}

impl Checker {
    fn count(&mut self, kind: &'static str) {
        self.count_n(kind, 1);
    }

    fn count_n(&mut self, kind: &'static str, n: usize) {
        *self.checks.entry(kind).or_default() += n as u64;
    }

    /// Counts a piece of work a client did (reported with the checks).
    pub(crate) fn count_work(&mut self, kind: &'static str) {
        *self.work.entry(kind).or_default() += 1;
    }

    /// Records the first violation.
    pub(crate) fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }

    /// A producer's batch was acknowledged at `base_offset`.
    pub(crate) fn acked(&mut self, (pid, epoch): (i64, i16), topic: &str, p: i32, first_seq: i32, base_offset: i64) {
        self.acked.entry((pid, topic.to_string(), p)).or_default().push((epoch, first_seq, base_offset));
    }

    /// An offset commit was acknowledged.
    pub(crate) fn committed(&mut self, group: &str, topic: &str, p: i32, offset: i64) {
        self.commits.insert((group.to_string(), topic.to_string(), p), offset);
    }

    /// InitProducerId gave `pid` epoch `epoch`: older epochs are fenced from now on.
    pub(crate) fn fenced(&mut self, core: &ClusterCore, pid: i64, epoch: i16) {
        let mut ends = BTreeMap::new();
        for t in core.topics() {
            for p in &t.partitions {
                ends.insert((t.name.clone(), p.index), p.log.lock().log_end_offset());
            }
        }
        self.fences.push((pid, epoch, ends));
    }

    /// A read_committed reader was given a transactional record.
    pub(crate) fn delivered(&mut self, topic: &str, p: i32, offset: i64, pid: i64) {
        self.delivered.push(((topic.to_string(), p), offset, pid));
    }

    /// The checks made after every step.
    pub(crate) fn step(&mut self, core: &Arc<ClusterCore>) {
        for t in core.topics() {
            for p in &t.partitions {
                let (leo, lso) = {
                    let log = p.log.lock();
                    (log.log_end_offset(), log.last_stable_offset())
                };
                let key = (t.name.clone(), p.index);
                let before = self.high_watermarks.insert(key, leo).unwrap_or(0);
                self.count("high watermark never decreases");
                if leo < before {
                    self.fail(format!("the high watermark of {}-{} went back from {before} to {leo}", t.name, p.index));
                }
                self.count("last stable offset within the log");
                if lso > leo {
                    self.fail(format!("the last stable offset {lso} of {}-{} is past its end {leo}", t.name, p.index));
                }
            }
        }
        let groups = core.groups.lock();
        let mut broken = Vec::new();
        for ((g, t, p), acked) in &self.commits {
            let now = groups.group(g).and_then(|grp| grp.offsets.get(&(t.clone(), *p))).map(|e| e.offset);
            if now.is_none_or(|o| o < *acked) {
                broken.push(format!("group {g} {t}-{p}: commit {acked} was acknowledged, the broker has {now:?}"));
            }
        }
        drop(groups);
        self.count_n("acknowledged commits kept, never backwards", self.commits.len());
        if let Some(b) = broken.into_iter().next() {
            self.fail(b);
        }
    }

    /// The checks over whole logs.
    /// On a compacted topic an acknowledged record may be gone (a later one of its key
    /// replaced it): the cleaner's own check covers those.
    pub(crate) fn heavy(&mut self, core: &Arc<ClusterCore>, topics: &[(&str, i32, bool)]) {
        for (topic, partitions, compacted) in topics {
            for p in 0..*partitions {
                let recs = records(core, topic, p);
                self.once_in_order(topic, p, &recs, !compacted);
                self.fences_held(topic, p, &recs);
                self.committed_only(topic, p, &recs);
            }
        }
    }

    fn once_in_order(&mut self, topic: &str, p: i32, recs: &[Record], all_kept: bool) {
        let mut last: BTreeMap<i64, (i16, i32)> = BTreeMap::new();
        let mut seen: BTreeMap<(i64, i16, i32), i64> = BTreeMap::new();
        for r in recs.iter().filter(|r| !r.control && r.producer_id >= 0) {
            self.count("a producer's records once each, in order");
            if let Some((epoch, seq)) = last.get(&r.producer_id) {
                if *epoch == r.producer_epoch && r.sequence <= *seq {
                    self.fail(format!(
                        "{topic}-{p}: producer {} epoch {epoch} wrote sequence {} at offset {} after sequence {seq}",
                        r.producer_id, r.sequence, r.offset
                    ));
                }
            }
            last.insert(r.producer_id, (r.producer_epoch, r.sequence));
            seen.entry((r.producer_id, r.producer_epoch, r.sequence)).or_insert(r.offset);
        }
        let acked: Acked = self
            .acked
            .iter()
            .filter(|((_, t, q), _)| all_kept && t == topic && *q == p)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((pid, _, _), batches) in acked {
            for (epoch, seq, offset) in batches {
                self.count("acknowledged batches kept");
                if seen.get(&(pid, epoch, seq)) != Some(&offset) {
                    let found: Vec<(i64, i16, i32, bool)> = recs
                        .iter()
                        .filter(|r| r.producer_id == pid)
                        .map(|r| (r.offset, r.producer_epoch, r.sequence, r.transactional))
                        .take(12)
                        .collect();
                    self.fail(format!(
                        "{topic}-{p}: producer {pid}'s acknowledged batch (epoch {epoch}, sequence {seq} at offset {offset}) is gone; \
                         its records there (offset, epoch, sequence, transactional): {found:?}"
                    ));
                }
            }
        }
    }

    fn fences_held(&mut self, topic: &str, p: i32, recs: &[Record]) {
        let fences = std::mem::take(&mut self.fences);
        for (pid, epoch, ends) in &fences {
            let Some(end) = ends.get(&(topic.to_string(), p)) else { continue };
            self.count("a fenced producer never writes");
            if let Some(r) = recs
                .iter()
                .find(|r| !r.control && r.producer_id == *pid && r.producer_epoch < *epoch && r.offset >= *end)
            {
                self.fail(format!(
                    "{topic}-{p}: producer {pid} epoch {} wrote at offset {} after epoch {epoch} fenced it (log end then {end})",
                    r.producer_epoch, r.offset
                ));
            }
        }
        self.fences = fences;
    }

    fn committed_only(&mut self, topic: &str, p: i32, recs: &[Record]) {
        let delivered: Vec<(i64, i64)> = self
            .delivered
            .iter()
            .filter(|((t, q), ..)| t == topic && *q == p)
            .map(|(_, off, pid)| (*off, *pid))
            .collect();
        for (offset, pid) in delivered {
            self.count("read_committed shows committed data only");
            let marker = recs.iter().find(|r| r.control && r.producer_id == pid && r.offset > offset);
            match marker.map(|m| m.key.as_ref().is_some_and(|k| k.len() >= 4 && k[3] == 1)) {
                Some(true) => {}
                Some(false) => self.fail(format!("{topic}-{p}: a read_committed reader got aborted record {offset} of producer {pid}")),
                None => self.fail(format!("{topic}-{p}: a read_committed reader got record {offset} of producer {pid}, whose transaction is open")),
            }
        }
    }

    /// Remembers the latest record of every key of compacted partitions before a pass.
    pub(crate) fn before_clean(&mut self, core: &Arc<ClusterCore>, compacted: &[(&str, i32)]) {
        self.before_clean.clear();
        for (topic, partitions) in compacted {
            for p in 0..*partitions {
                let mut latest = BTreeMap::new();
                for r in records(core, topic, p).into_iter().filter(|r| !r.control) {
                    if let Some(k) = &r.key {
                        latest.insert(k.to_vec(), (r.offset, r.value.as_ref().map(|v| v.to_vec())));
                    }
                }
                self.before_clean.insert((topic.to_string(), p), latest);
            }
        }
    }

    /// After a pass: every key keeps its latest record (a tombstone may go).
    pub(crate) fn after_clean(&mut self, core: &Arc<ClusterCore>) {
        let before = std::mem::take(&mut self.before_clean);
        for ((topic, p), latest) in before {
            let mut now = BTreeMap::new();
            let mut last_offset = -1;
            for r in records(core, &topic, p).into_iter().filter(|r| !r.control) {
                if r.offset <= last_offset {
                    self.fail(format!(
                        "{topic}-{p}: offsets out of order after cleaning ({} after {last_offset})",
                        r.offset
                    ));
                }
                last_offset = r.offset;
                if let Some(k) = &r.key {
                    now.insert(k.to_vec(), (r.offset, r.value.as_ref().map(|v| v.to_vec())));
                }
            }
            for (key, (offset, value)) in latest {
                self.count("a compacted partition keeps every key's latest value");
                match now.get(&key) {
                    Some(kept) if *kept == (offset, value.clone()) => {}
                    None if value.is_none() => {}
                    other => self.fail(format!(
                        "{topic}-{p}: key {:?} had its latest record at {offset}; after cleaning {other:?}",
                        String::from_utf8_lossy(&key)
                    )),
                }
            }
        }
    }
}
