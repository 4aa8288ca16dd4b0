//! An adaptive concurrency limit: how many ApproveTransfer drives one gateway lets run at
//! once, learnt from their latencies (the idea of Netflix's concurrency-limits Gradient2
//! and Envoy's adaptive concurrency filter).
//!
//! Latencies are gathered in windows (at least `window_ms` long and `window_samples_min`
//! samples big); at the end of each window its mean latency `w` moves the limit:
//! - `w` above `latency_ms_max` (a share of the budget: requests are about to miss it):
//!   the limit shrinks multiplicatively at once ([`BACKOFF_PERCENT`]).
//! - Otherwise the gradient `target / w`, clamped to [0.5, 1], scales the limit, where
//!   `target` is `latency_tolerance_percent` of the no-load latency (but at least
//!   `latency_target_ms_min`, since our clock counts whole milliseconds); a headroom of
//!   `sqrt(limit)` is added when the window used at least half the limit, so the limit
//!   keeps probing upwards while latency stays near the no-load latency and does not grow
//!   while demand is below it. The step is smoothed ([`SMOOTHING_PERCENT`]).
//! - The no-load latency follows the lowest windows at once and rises only slowly
//!   ([`NO_LOAD_DRIFT`]), so a lasting change in the baseline (a slower database) is
//!   learnt within seconds while a burst of queueing is not taken for it.
//!
//! The limit always stays within [`LimitPolicy::limit_min`, `LimitPolicy::limit_max`].
//! Pure: time is the caller's `now_ms`.

/// Multiplicative decrease when a window's latency exceeds `latency_ms_max`.
pub const BACKOFF_PERCENT: u32 = 80;
/// How much of each gradient step is taken (the rest is the old limit): damps noise.
pub const SMOOTHING_PERCENT: u32 = 20;
/// The no-load latency moves 1/NO_LOAD_DRIFT of the way up towards a slower window.
pub const NO_LOAD_DRIFT: u32 = 64;
/// The gradient never shrinks the limit by more than half in one window.
const GRADIENT_MIN: f64 = 0.5;

/// The limiter's settings (the gateway's `[admission]` keys of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitPolicy {
    pub limit_initial: u32,
    pub limit_min: u32,
    pub limit_max: u32,
    /// The limit grows while a window's mean latency stays within this percentage of the
    /// no-load latency (200: twice it).
    pub latency_tolerance_percent: u32,
    /// The growth target is never below this many milliseconds.
    pub latency_target_ms_min: u64,
    /// A window slower than this shrinks the limit whatever the no-load latency says.
    pub latency_ms_max: u64,
    pub window_ms: u64,
    pub window_samples_min: u32,
}

impl LimitPolicy {
    pub const DEFAULT: LimitPolicy = LimitPolicy {
        limit_initial: 32,
        limit_min: 4,
        limit_max: 256,
        latency_tolerance_percent: 200,
        latency_target_ms_min: 10,
        latency_ms_max: 100,
        window_ms: 100,
        window_samples_min: 8,
    };

    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.limit_min == 0 {
            return Err("admission.limit_min must be at least 1".into());
        }
        if !(self.limit_min <= self.limit_initial && self.limit_initial <= self.limit_max) {
            return Err(format!(
                "admission: limit_min ({}) <= limit_initial ({}) <= limit_max ({}) must hold",
                self.limit_min, self.limit_initial, self.limit_max
            ));
        }
        if self.latency_tolerance_percent < 100 {
            return Err(format!(
                "admission.latency_tolerance_percent must be at least 100, got {}",
                self.latency_tolerance_percent
            ));
        }
        if self.latency_target_ms_min == 0 || self.latency_target_ms_min >= self.latency_ms_max {
            return Err(format!(
                "admission: 0 < latency_target_ms_min ({}) < latency_ms_max ({}) must hold",
                self.latency_target_ms_min, self.latency_ms_max
            ));
        }
        if self.window_ms == 0 || self.window_samples_min == 0 {
            return Err(
                "admission.window_ms and admission.window_samples_min must be positive".into(),
            );
        }
        Ok(())
    }
}

/// The latencies gathered since the last window closed.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    started_at_ms: u64,
    samples: u32,
    latency_sum_ms: u64,
    /// The most drives in flight at once during the window.
    in_flight_peak: u32,
}

impl Window {
    fn new(now_ms: u64, in_flight: u32) -> Window {
        Window {
            started_at_ms: now_ms,
            samples: 0,
            latency_sum_ms: 0,
            in_flight_peak: in_flight,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveLimit {
    policy: LimitPolicy,
    limit: f64,
    /// None until the first window closes.
    no_load_ms: Option<f64>,
    window: Window,
}

impl AdaptiveLimit {
    pub fn new(policy: LimitPolicy, now_ms: u64) -> AdaptiveLimit {
        assert!(
            policy.validate().is_ok(),
            "an invalid limit policy: {policy:?}"
        );
        AdaptiveLimit {
            policy,
            limit: f64::from(policy.limit_initial),
            no_load_ms: None,
            window: Window::new(now_ms, 0),
        }
    }

    /// Drives allowed in flight at once.
    pub fn limit(&self) -> u32 {
        // In bounds by construction (`set_limit`); the cast truncates a value in range.
        let limit = self.limit as u32;
        assert!(self.policy.limit_min <= limit && limit <= self.policy.limit_max);
        limit
    }

    /// The no-load latency learnt so far (None before the first window closes).
    pub fn no_load_ms(&self) -> Option<f64> {
        self.no_load_ms
    }

    /// `in_flight` drives are running now (called on every admission).
    pub fn handle_in_flight(&mut self, in_flight: u32) {
        self.window.in_flight_peak = self.window.in_flight_peak.max(in_flight);
    }

    /// A drive finished after `latency_ms`; `in_flight` are still running. Returns true
    /// when this sample closed a window (and so may have moved the limit).
    pub fn handle_sample(&mut self, now_ms: u64, latency_ms: u64, in_flight: u32) -> bool {
        let window = &mut self.window;
        window.samples += 1;
        window.latency_sum_ms = window.latency_sum_ms.saturating_add(latency_ms);
        let long_enough = now_ms >= window.started_at_ms.saturating_add(self.policy.window_ms);
        if !long_enough || window.samples < self.policy.window_samples_min {
            return false;
        }
        let closed = *window;
        self.window = Window::new(now_ms, in_flight);
        self.close_window(closed);
        true
    }

    fn close_window(&mut self, window: Window) {
        let mean_ms = window.latency_sum_ms as f64 / f64::from(window.samples);
        let no_load_ms = match self.no_load_ms {
            Some(no_load) if mean_ms >= no_load => {
                no_load + (mean_ms - no_load) / f64::from(NO_LOAD_DRIFT)
            }
            _ => mean_ms,
        };
        self.no_load_ms = Some(no_load_ms);
        let limit = self.limit;
        let next = if mean_ms > self.policy.latency_ms_max as f64 {
            limit * f64::from(BACKOFF_PERCENT) / 100.0
        } else {
            let target_ms = (no_load_ms * f64::from(self.policy.latency_tolerance_percent) / 100.0)
                .max(self.policy.latency_target_ms_min as f64);
            let gradient = if mean_ms <= 0.0 {
                1.0
            } else {
                (target_ms / mean_ms).clamp(GRADIENT_MIN, 1.0)
            };
            // Probe upwards only when demand reaches the limit: an idle gateway must not
            // grow a limit that a sudden burst would then be allowed to fill.
            let busy = f64::from(window.in_flight_peak) * 2.0 >= limit;
            let headroom = if busy { limit.sqrt() } else { 0.0 };
            let stepped = limit * gradient + headroom;
            let smoothing = f64::from(SMOOTHING_PERCENT) / 100.0;
            limit * (1.0 - smoothing) + stepped * smoothing
        };
        self.set_limit(next);
    }

    fn set_limit(&mut self, limit: f64) {
        let min = f64::from(self.policy.limit_min);
        let max = f64::from(self.policy.limit_max);
        // NaN cannot arise (latencies are finite, samples > 0), but would clamp to min.
        self.limit = if limit.is_nan() {
            min
        } else {
            limit.clamp(min, max)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `windows` full windows of `latency_ms` samples, `in_flight` at the limit.
    fn feed(limit: &mut AdaptiveLimit, now_ms: &mut u64, windows: u32, latency_ms: u64) {
        for _ in 0..windows {
            let in_flight = limit.limit();
            limit.handle_in_flight(in_flight);
            for _ in 0..limit.policy.window_samples_min {
                *now_ms += limit.policy.window_ms / u64::from(limit.policy.window_samples_min);
                limit.handle_sample(*now_ms, latency_ms, in_flight);
            }
            *now_ms += limit.policy.window_ms;
            limit.handle_sample(*now_ms, latency_ms, in_flight);
        }
    }

    #[test]
    fn starts_at_the_initial_limit_and_needs_a_full_window() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 1_000);
        assert_eq!(limit.limit(), 32);
        // Enough samples but not enough time, then enough time but not enough samples.
        for _ in 0..20 {
            assert!(!limit.handle_sample(1_050, 500, 32));
        }
        let mut sparse = AdaptiveLimit::new(LimitPolicy::DEFAULT, 1_000);
        assert!(!sparse.handle_sample(5_000, 500, 1));
        assert_eq!(limit.limit(), 32);
        assert!(limit.handle_sample(1_100, 500, 32));
        assert!(limit.limit() < 32);
    }

    #[test]
    fn grows_while_latency_stays_near_the_no_load_latency() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        let mut now_ms = 0;
        feed(&mut limit, &mut now_ms, 50, 5);
        assert!(limit.limit() > 64, "{}", limit.limit());
        assert_eq!(limit.no_load_ms(), Some(5.0));
    }

    #[test]
    fn does_not_grow_while_demand_stays_below_it() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        for i in 1..=1_000 {
            limit.handle_sample(i * 20, 5, 1);
        }
        assert_eq!(limit.limit(), 32);
    }

    #[test]
    fn shrinks_multiplicatively_past_the_latency_ceiling_down_to_the_minimum() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        let mut now_ms = 0;
        feed(&mut limit, &mut now_ms, 1, 150);
        assert_eq!(limit.limit(), 32 * BACKOFF_PERCENT / 100);
        feed(&mut limit, &mut now_ms, 50, 150);
        assert_eq!(limit.limit(), LimitPolicy::DEFAULT.limit_min);
    }

    #[test]
    fn shrinks_when_latency_rises_well_above_the_no_load_latency() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        let mut now_ms = 0;
        feed(&mut limit, &mut now_ms, 20, 5);
        let grown = limit.limit();
        // Below the ceiling, but six times the no-load latency: queueing.
        feed(&mut limit, &mut now_ms, 10, 60);
        assert!(limit.limit() < grown / 2, "{} from {grown}", limit.limit());
    }

    #[test]
    fn recovers_when_latency_falls_back() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        let mut now_ms = 0;
        feed(&mut limit, &mut now_ms, 5, 5);
        feed(&mut limit, &mut now_ms, 40, 150);
        assert_eq!(limit.limit(), LimitPolicy::DEFAULT.limit_min);
        // 50 windows: five seconds at the default window.
        feed(&mut limit, &mut now_ms, 50, 5);
        assert!(limit.limit() >= 32, "{}", limit.limit());
    }

    #[test]
    fn the_no_load_latency_follows_a_lasting_baseline_change_slowly() {
        let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
        let mut now_ms = 0;
        feed(&mut limit, &mut now_ms, 5, 5);
        feed(&mut limit, &mut now_ms, 1, 80);
        let after_one = limit.no_load_ms().unwrap();
        assert!(after_one < 7.0, "{after_one}");
        feed(&mut limit, &mut now_ms, 300, 80);
        assert!(limit.no_load_ms().unwrap() > 70.0);
    }

    #[test]
    fn invalid_policies_name_their_key() {
        let bad = |edit: fn(&mut LimitPolicy)| {
            let mut policy = LimitPolicy::DEFAULT;
            edit(&mut policy);
            policy.validate().unwrap_err()
        };
        LimitPolicy::DEFAULT.validate().unwrap();
        assert!(bad(|p| p.limit_min = 0).contains("limit_min"));
        assert!(bad(|p| p.limit_initial = 1_000).contains("limit_initial"));
        assert!(bad(|p| p.latency_tolerance_percent = 50).contains("latency_tolerance_percent"));
        assert!(bad(|p| p.latency_target_ms_min = 100).contains("latency_target_ms_min"));
        assert!(bad(|p| p.window_ms = 0).contains("window_ms"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the latencies, timings and in-flight counts, the limit stays in
            /// its bounds.
            #[test]
            fn the_limit_stays_in_bounds(
                min in 1u32..20,
                extra in 0u32..300,
                samples in proptest::collection::vec((0u64..400, 0u64..5_000, 0u32..600), 1..400),
            ) {
                let policy = LimitPolicy {
                    limit_min: min,
                    limit_initial: min + extra / 2,
                    limit_max: min + extra,
                    ..LimitPolicy::DEFAULT
                };
                let mut limit = AdaptiveLimit::new(policy, 0);
                let mut now_ms = 0;
                for (step_ms, latency_ms, in_flight) in samples {
                    now_ms += step_ms;
                    limit.handle_in_flight(in_flight);
                    limit.handle_sample(now_ms, latency_ms, in_flight);
                    let l = limit.limit();
                    prop_assert!(policy.limit_min <= l && l <= policy.limit_max);
                }
            }

            /// Latency at or above the ceiling never raises the limit.
            #[test]
            fn slow_windows_never_raise_the_limit(
                latencies in proptest::collection::vec(101u64..10_000, 1..200),
            ) {
                let mut limit = AdaptiveLimit::new(LimitPolicy::DEFAULT, 0);
                let mut now_ms = 0;
                for latency_ms in latencies {
                    let before = limit.limit();
                    now_ms += 20;
                    limit.handle_sample(now_ms, latency_ms, before);
                    prop_assert!(limit.limit() <= before);
                }
            }
        }
    }
}
