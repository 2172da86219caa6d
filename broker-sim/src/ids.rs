//! Identifiers the cluster makes up (topic ids, the cluster id, member ids): random in a
//! running cluster, drawn from a seeded sequence in a simulation so a run replays exactly.

use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

/// A source of fresh UUIDs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ids(Option<Arc<Mutex<u64>>>);

impl Ids {
    /// Random version-4 UUIDs.
    pub(crate) fn random() -> Self {
        Ids(None)
    }

    /// A sequence determined by `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        Ids(Some(Arc::new(Mutex::new(seed))))
    }

    /// The next UUID (version 4 layout either way).
    pub(crate) fn uuid(&self) -> Uuid {
        match &self.0 {
            None => Uuid::new_v4(),
            Some(state) => {
                let mut s = state.lock();
                let hi = splitmix64(&mut s);
                let lo = splitmix64(&mut s);
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&hi.to_be_bytes());
                bytes[8..].copy_from_slice(&lo.to_be_bytes());
                uuid::Builder::from_random_bytes(bytes).into_uuid()
            }
        }
    }
}

/// One step of SplitMix64 (Steele, Lea and Flood): a fast, well-mixed 64-bit sequence.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_repeat_a_seeded_sequence_and_differ_across_seeds() {
        let (a, b, c) = (Ids::seeded(7), Ids::seeded(7), Ids::seeded(8));
        let first: Vec<Uuid> = (0..3).map(|_| a.uuid()).collect();
        assert_eq!(first, (0..3).map(|_| b.uuid()).collect::<Vec<_>>());
        assert_ne!(first[0], c.uuid());
        assert_eq!(first[0].get_version_num(), 4);
        assert_ne!(Ids::random().uuid(), Ids::random().uuid());
    }
}
