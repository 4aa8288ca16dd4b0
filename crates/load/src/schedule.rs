//! The open loop's schedule: the `i`-th request is due `i / rate` seconds after the start,
//! whatever happened to the requests before it. Latency is measured from this scheduled
//! time, not from when the request actually left, so a stalled system cannot hide its
//! stalls by slowing the load down (no coordinated omission).

use std::time::Duration;

/// A constant arrival rate, in integer nanoseconds so that the schedule never drifts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSchedule {
    rate_per_s: u32,
}

impl OpenSchedule {
    pub fn new(rate_per_s: u32) -> OpenSchedule {
        assert!(rate_per_s > 0, "an open loop needs a positive rate");
        OpenSchedule { rate_per_s }
    }

    pub fn rate_per_s(self) -> u32 {
        self.rate_per_s
    }

    /// When request `sequence` is due, after the start.
    pub fn offset(self, sequence: u64) -> Duration {
        let nanos = u128::from(sequence) * 1_000_000_000 / u128::from(self.rate_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many requests are due by `elapsed` (those with `offset <= elapsed`).
    pub fn due_by(self, elapsed: Duration) -> u64 {
        let due = elapsed.as_nanos() * u128::from(self.rate_per_s) / 1_000_000_000 + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// How many requests a window of `length` holds (those with `offset < length`).
    pub fn count_within(self, length: Duration) -> u64 {
        let scaled = length.as_nanos() * u128::from(self.rate_per_s);
        let count = scaled.div_ceil(1_000_000_000);
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_evenly_spaced_from_the_start() {
        let s = OpenSchedule::new(400);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_micros(2_500));
        assert_eq!(s.offset(400), Duration::from_secs(1));
        // 3 per second: no rounding drift after many periods.
        let s = OpenSchedule::new(3);
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn due_and_window_counts_agree_with_the_offsets() {
        let s = OpenSchedule::new(400);
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_micros(2_499)), 1);
        assert_eq!(s.due_by(Duration::from_micros(2_500)), 2);
        assert_eq!(s.count_within(Duration::from_secs(10)), 4_000);
        assert_eq!(s.count_within(Duration::from_micros(2_501)), 2);
        assert_eq!(s.count_within(Duration::ZERO), 0);
        for sequence in [0u64, 1, 17, 3_999] {
            let at = s.offset(sequence);
            assert!(s.due_by(at) > sequence);
            assert_eq!(s.count_within(at), sequence);
        }
    }

    #[test]
    #[should_panic(expected = "positive rate")]
    fn a_zero_rate_is_refused() {
        OpenSchedule::new(0);
    }
}
