use super::*;

/// The range CI runs: every seed of `sim --seeds 1..1001` (about 50 s in a debug build).
#[test]
fn should_hold_every_invariant_over_seeds_1_to_1000() {
    let opts = Options::default();
    let mut faults = 0;
    for seed in 1..=1000 {
        let r = run(seed, &opts);
        assert_eq!(r.violation, None, "seed {seed} (replay: sim --seeds {seed}): {r:?}");
        assert_eq!(r.steps, opts.steps);
        assert!(r.work.get("answers").copied().unwrap_or(0) > 300, "seed {seed} did work: {r:?}");
        faults += r.faults.values().sum::<u64>();
    }
    assert!(faults > 10_000, "faults were injected: {faults}");
}

/// The checker's control: without `flush.messages=1` a crash loses acknowledged writes, and
/// the checker must say so, on every seed tried.
#[test]
fn should_catch_lost_acknowledged_writes_when_the_broker_does_not_sync() {
    let opts = Options { durable: false, ..Options::default() };
    for seed in 1..=5 {
        let r = run(seed, &opts);
        let v = r.violation.unwrap_or_else(|| panic!("seed {seed} lost nothing: {:?}", r.faults));
        assert!(v.contains("went back") || v.contains("is gone"), "seed {seed}: {v}");
    }
}

#[test]
fn should_replay_a_seed_exactly() {
    let opts = Options { steps: 500, ..Options::default() };
    let (a, b) = (run(42, &opts), run(42, &opts));
    assert_eq!((a.digest, &a.faults, &a.checks, &a.work), (b.digest, &b.faults, &b.checks, &b.work));
    assert_ne!(a.digest, run(43, &opts).digest, "another seed is another run");
}

/// Seed 1 once failed: the checker expected every acknowledged record of the compacted topic
/// to stay, but the cleaner rightly removes records a later one of their key replaced. The
/// check of acknowledged batches now skips compacted topics; the cleaner's own check covers
/// them.
#[test]
fn regression_seed_1_compaction_removes_superseded_acknowledged_records() {
    let r = run(1, &Options::default());
    assert_eq!(r.violation, None);
    assert!(r.work.get("cleaner passes").copied().unwrap_or(0) > 0, "the cleaner ran: {r:?}");
}

/// Seed 2 once failed: a transactional producer fenced and re-initialized starts its
/// sequences at 0 again under its new epoch, and the checker keyed acknowledged batches by
/// producer id alone. They are keyed by producer id and epoch now.
#[test]
fn regression_seed_2_a_new_epoch_restarts_sequences() {
    let r = run(2, &Options::default());
    assert_eq!(r.violation, None);
    assert!(r.faults.get("zombie").copied().unwrap_or(0) > 0, "a zombie fenced a producer: {r:?}");
}
