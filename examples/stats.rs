//! What the benchmarks need to report noisy figures honestly: medians, a distribution-free
//! confidence interval for a median, and a probe of the machine's memory speed (on a shared
//! VM it drifts by ±15% from one second to the next, and the stream thread's speed with it).

use std::time::{Duration, Instant};

/// The median of `xs` (NaN when `xs` is empty or holds a NaN, i.e. a cell was not run).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// A confidence interval for the median of the distribution `xs` were drawn from, at least
/// `confidence` (0.95, say), from order statistics alone (no assumption on the distribution):
/// `(low, high, actual confidence)`. `None` when there are too few samples for that confidence
/// (fewer than 6 for 95%) or a sample is NaN.
///
/// The `k`-th smallest and `k`-th largest samples bound the median with probability
/// `1 - 2·P(B ≤ k - 1)`, `B` binomial with `n` trials of one half; `k` is the largest for which
/// that is at least `confidence`.
pub fn median_interval(xs: &[f64], confidence: f64) -> Option<(f64, f64, f64)> {
    if xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let n = xs.len();
    let tail = (1.0 - confidence) / 2.0;
    // P(B ≤ j) for j = 0, 1, ...: the cumulative binomial, term by term.
    let mut term = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut cumulative = 0.0;
    let mut chosen = None;
    for j in 0..n / 2 {
        cumulative += term;
        if cumulative > tail {
            break;
        }
        // Rank j + 1 (1-based) and its mirror bound the median with this confidence.
        chosen = Some((j, 1.0 - 2.0 * cumulative));
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    let (j, actual) = chosen?;
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some((v[j], v[n - 1 - j], actual))
}

/// A probe of this machine's memory speed: random 8-byte reads over a 64 MiB array, allocated
/// once so that probing does not change what the allocator holds between benchmark rounds.
pub struct MemoryProbe {
    data: Vec<u64>,
}

impl MemoryProbe {
    const WORDS: usize = 8 << 20;

    /// Allocates and fills the array.
    pub fn new() -> Self {
        MemoryProbe { data: (0..Self::WORDS as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect() }
    }

    /// Random reads per microsecond for `duration`: printed next to each benchmark round, so
    /// that a slow round can be told from a slow machine.
    pub fn reads_per_us(&self, duration: Duration) -> f64 {
        let (mut x, mut sum, mut reads) = (1u64, 0u64, 0u64);
        let start = Instant::now();
        while start.elapsed() < duration {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                sum = sum.wrapping_add(self.data[(x >> 20) as usize % Self::WORDS]);
            }
            reads += 100_000;
        }
        std::hint::black_box(sum);
        reads as f64 / start.elapsed().as_secs_f64() / 1e6
    }
}

impl Default for MemoryProbe {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_take_the_middle_sample_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!(median(&[1.0, f64::NAN]).is_nan());
    }

    #[test]
    fn should_bound_the_median_by_the_order_statistics_the_binomial_allows() {
        let xs: Vec<f64> = (1..=11).map(f64::from).rev().collect();
        // n = 11: P(B ≤ 1) = 12/2048, P(B ≤ 2) = 67/2048 > 2.5%: the 2nd and 10th samples.
        let (low, high, actual) = median_interval(&xs, 0.95).expect("11 samples suffice");
        assert_eq!((low, high), (2.0, 10.0));
        assert!((actual - (1.0 - 24.0 / 2048.0)).abs() < 1e-12, "{actual}");
        // n = 21: P(B ≤ 5) = 1.33%, P(B ≤ 6) = 3.92%: the 6th and 16th.
        let xs: Vec<f64> = (1..=21).map(f64::from).collect();
        let (low, high, _) = median_interval(&xs, 0.95).expect("21 samples suffice");
        assert_eq!((low, high), (6.0, 16.0));
    }

    #[test]
    fn should_refuse_an_interval_with_too_few_samples() {
        // n = 5: even the extremes bound the median only with probability 1 - 2/32 < 95%.
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), None);
        assert!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.95).is_some());
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN], 0.95), None);
    }
}
