use super::*;

/// The range CI runs (about 10 s in a debug build); `sim --seeds 1..1000` runs more.
#[test]
fn should_hold_every_invariant_over_seeds_1_to_200() {
    let opts = Options::default();
    let mut faults = 0;
    for seed in 1..=200 {
        let r = run(seed, &opts);
        assert_eq!(r.violation, None, "seed {seed} (replay: sim --seeds {seed}): {r:?}");
        assert_eq!(r.steps, opts.steps);
        assert!(r.work.get("answers").copied().unwrap_or(0) > 300, "seed {seed} did work: {r:?}");
        faults += r.faults.values().sum::<u64>();
    }
    assert!(faults > 1_000, "faults were injected: {faults}");
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
