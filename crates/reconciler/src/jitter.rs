//! Backoff jitter for the service shell: a small seeded generator (SplitMix64), so that
//! replicas retrying the same outage spread out. The protocol core takes the draw as an
//! argument; only this shell makes it.

/// SplitMix64: tiny, fast, and good enough to decorrelate replicas; not for secrets.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn seeded(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    /// Seeded from the random bits of a fresh UUID v7 (uuid draws them from the OS).
    pub fn from_entropy() -> Jitter {
        let bytes = uuid::Uuid::now_v7().into_bytes();
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&bytes[8..]);
        Jitter::seeded(u64::from_le_bytes(tail))
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in 0..=1000, as `reconcile::next_attempt_at_ms` takes it.
    pub fn next_permille(&mut self) -> u16 {
        (self.next_u64() % 1001) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_replay_from_the_seed() {
        let mut a = Jitter::seeded(42);
        let mut b = Jitter::seeded(42);
        let draws: Vec<u16> = (0..1_000).map(|_| a.next_permille()).collect();
        assert!(draws.iter().all(|d| *d <= 1000));
        assert_eq!(
            draws,
            (0..1_000).map(|_| b.next_permille()).collect::<Vec<_>>()
        );
        // Not constant: the draws spread over the range.
        assert!(draws.iter().any(|d| *d < 100) && draws.iter().any(|d| *d > 900));
    }
}
