//! Seeded randomness for the simulation and the seeded tests: SplitMix64 streams, all
//! derived from the run's one seed.
//! Each consumer (the fault schedule, every user, every store's failure planner, the id
//! generator, the reconciler's jitter) gets a stream of its own, so that adding a draw in
//! one place does not shift the draws everywhere else.

/// SplitMix64: tiny, fast, statistically fine for scheduling; not for secrets.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// The seed of an independent stream, named by `label`.
    pub fn derive(seed: u64, label: &str) -> u64 {
        // FNV-1a over the label, mixed with the seed through one SplitMix64 step.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in label.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        SimRng::new(seed ^ hash).next_u64()
    }

    /// A stream of its own, named by `label`.
    pub fn stream(seed: u64, label: &str) -> SimRng {
        SimRng::new(SimRng::derive(seed, label))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "between({low}, {high})");
        low + self.below(high - low + 1)
    }

    /// True with probability `per_million` / 1,000,000.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }

    /// One of `items`, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = self.below(items.len() as u64) as usize;
        &items[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_replay_and_differ_by_label() {
        let draws = |label| {
            let mut rng = SimRng::stream(7, label);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws("faults"), draws("faults"));
        assert_ne!(draws("faults"), draws("user-0"));
        let mut rng = SimRng::new(1);
        assert!((0..1_000).all(|_| (3..=5).contains(&rng.between(3, 5))));
    }
}
