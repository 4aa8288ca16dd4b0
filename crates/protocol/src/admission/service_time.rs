//! The expected service time of a drive: the 90th percentile of the latest successful
//! drives, over a fixed ring of samples (bounded memory, no clock).
//!
//! Only SUCCEEDED drives count: a drive cut short by its deadline (PROCESSING, or failed
//! for lack of budget) says how long its budget was, not how long the work takes, and
//! counting it would drag the estimate up to the budget and refuse everyone.

/// Samples kept: the estimate follows the last this-many successes.
pub const SAMPLES_MAX: usize = 128;
/// Below this many samples there is no estimate (and nobody is refused for it).
pub const SAMPLES_MIN: usize = 16;
/// The percentile taken.
const PERCENTILE: usize = 90;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTimeEstimate {
    /// A ring: `next` is where the next sample goes once it is full.
    samples_ms: Vec<u64>,
    next: usize,
    /// Recomputed on every sample (one per drive), read on every admission.
    p90_ms: Option<u64>,
}

impl ServiceTimeEstimate {
    pub fn new() -> ServiceTimeEstimate {
        ServiceTimeEstimate {
            samples_ms: Vec::with_capacity(SAMPLES_MAX),
            next: 0,
            p90_ms: None,
        }
    }

    /// A drive succeeded after `latency_ms`.
    pub fn handle_success(&mut self, latency_ms: u64) {
        if self.samples_ms.len() < SAMPLES_MAX {
            self.samples_ms.push(latency_ms);
        } else {
            self.samples_ms[self.next] = latency_ms;
            self.next = (self.next + 1) % SAMPLES_MAX;
        }
        assert!(self.samples_ms.len() <= SAMPLES_MAX);
        self.p90_ms = (self.samples_ms.len() >= SAMPLES_MIN).then(|| {
            let mut sorted = self.samples_ms.clone();
            sorted.sort_unstable();
            // The nearest-rank percentile: the smallest sample with at least 90% at or below.
            let rank = (sorted.len() * PERCENTILE).div_ceil(100);
            sorted[rank - 1]
        });
    }

    /// The 90th percentile of recent successful drives, once there are enough of them.
    pub fn p90_ms(&self) -> Option<u64> {
        self.p90_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_estimate_until_enough_samples() {
        let mut estimate = ServiceTimeEstimate::new();
        for _ in 1..SAMPLES_MIN {
            estimate.handle_success(7);
            assert_eq!(estimate.p90_ms(), None);
        }
        estimate.handle_success(7);
        assert_eq!(estimate.p90_ms(), Some(7));
    }

    #[test]
    fn takes_the_ninetieth_percentile() {
        let mut estimate = ServiceTimeEstimate::new();
        for latency_ms in 1..=100 {
            estimate.handle_success(latency_ms);
        }
        assert_eq!(estimate.p90_ms(), Some(90));
    }

    #[test]
    fn follows_the_latest_samples_only() {
        let mut estimate = ServiceTimeEstimate::new();
        for _ in 0..SAMPLES_MAX {
            estimate.handle_success(150);
        }
        assert_eq!(estimate.p90_ms(), Some(150));
        for _ in 0..SAMPLES_MAX {
            estimate.handle_success(5);
        }
        assert_eq!(estimate.p90_ms(), Some(5));
    }

    proptest! {
        /// The estimate is one of the last SAMPLES_MAX samples, and at least 90% of them
        /// are at or below it.
        #[test]
        fn the_estimate_is_a_recent_upper_ninetieth(
            samples in proptest::collection::vec(0u64..1_000, SAMPLES_MIN..400),
        ) {
            let mut estimate = ServiceTimeEstimate::new();
            for s in &samples {
                estimate.handle_success(*s);
            }
            let recent = &samples[samples.len().saturating_sub(SAMPLES_MAX)..];
            let p90 = estimate.p90_ms().unwrap();
            prop_assert!(recent.contains(&p90));
            let at_or_below = recent.iter().filter(|s| **s <= p90).count();
            prop_assert!(at_or_below * 100 >= recent.len() * 90);
        }
    }
}
