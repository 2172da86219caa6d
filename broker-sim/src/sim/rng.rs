//! The simulation's one source of randomness: a seeded SplitMix64 sequence. Every choice of a
//! run (delays, drops, faults, client actions) is drawn from it, so a seed replays exactly.

use crate::ids::splitmix64;

/// A seeded random sequence.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The sequence of `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6d6f_6c64_6175_5f73)
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }

    /// True with probability `per_mille` / 1000.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}
