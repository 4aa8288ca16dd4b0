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
/// An estimate whose latest success is older than this describes a past: it is dropped
/// ([`ServiceTimeEstimate::expire_if_stale`]). Without that, an estimate longer than every
/// request's budget (learnt in a slow spell: a cold database, an overload) would refuse
/// every request, so that no drive could ever succeed again to correct it.
pub const STALE_AFTER_MS: u64 = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTimeEstimate {
    /// A ring: `next` is where the next sample goes once it is full.
    samples_ms: Vec<u64>,
    next: usize,
    /// Recomputed on every sample (one per drive), read on every admission.
    p90_ms: Option<u64>,
    /// When the latest sample came.
    last_success_ms: u64,
}

impl ServiceTimeEstimate {
    pub fn new() -> ServiceTimeEstimate {
        ServiceTimeEstimate {
            samples_ms: Vec::with_capacity(SAMPLES_MAX),
            next: 0,
            p90_ms: None,
            last_success_ms: 0,
        }
    }

    /// Drops every sample if the latest is more than [`STALE_AFTER_MS`] old at `now_ms`:
    /// there is then no estimate until [`SAMPLES_MIN`] new successes.
    pub fn expire_if_stale(&mut self, now_ms: u64) {
        if !self.samples_ms.is_empty()
            && now_ms.saturating_sub(self.last_success_ms) > STALE_AFTER_MS
        {
            self.samples_ms.clear();
            self.next = 0;
            self.p90_ms = None;
        }
    }

    /// A drive succeeded at `now_ms` after `latency_ms`.
    pub fn handle_success(&mut self, now_ms: u64, latency_ms: u64) {
        self.expire_if_stale(now_ms);
        self.last_success_ms = now_ms;
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
            estimate.handle_success(0, 7);
            assert_eq!(estimate.p90_ms(), None);
        }
        estimate.handle_success(0, 7);
        assert_eq!(estimate.p90_ms(), Some(7));
    }

    #[test]
    fn takes_the_ninetieth_percentile() {
        let mut estimate = ServiceTimeEstimate::new();
        for latency_ms in 1..=100 {
            estimate.handle_success(0, latency_ms);
        }
        assert_eq!(estimate.p90_ms(), Some(90));
    }

    #[test]
    fn follows_the_latest_samples_only() {
        let mut estimate = ServiceTimeEstimate::new();
        for _ in 0..SAMPLES_MAX {
            estimate.handle_success(0, 150);
        }
        assert_eq!(estimate.p90_ms(), Some(150));
        for _ in 0..SAMPLES_MAX {
            estimate.handle_success(0, 5);
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
                estimate.handle_success(0, *s);
            }
            let recent = &samples[samples.len().saturating_sub(SAMPLES_MAX)..];
            let p90 = estimate.p90_ms().unwrap();
            prop_assert!(recent.contains(&p90));
            let at_or_below = recent.iter().filter(|s| **s <= p90).count();
            prop_assert!(at_or_below * 100 >= recent.len() * 90);
        }
    }

    #[test]
    fn an_estimate_without_a_recent_success_is_dropped() {
        let mut estimate = ServiceTimeEstimate::new();
        for i in 0..SAMPLES_MAX as u64 {
            estimate.handle_success(i, 250);
        }
        let last = SAMPLES_MAX as u64 - 1;
        estimate.expire_if_stale(last + STALE_AFTER_MS);
        assert_eq!(estimate.p90_ms(), Some(250), "not stale yet");
        estimate.expire_if_stale(last + STALE_AFTER_MS + 1);
        assert_eq!(estimate.p90_ms(), None);
        // The next estimate is learnt from new successes only.
        let now = last + STALE_AFTER_MS + 2;
        for _ in 0..SAMPLES_MIN {
            estimate.handle_success(now, 20);
        }
        assert_eq!(estimate.p90_ms(), Some(20));
    }
}
