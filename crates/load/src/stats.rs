//! What a run observed: latency histograms (HDR, microseconds), outcome counts by gRPC
//! status and by transfer status / failure reason, and the summary figures computed from
//! them (percentiles, goodput, offered and achieved rates).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies above a minute are recorded as a minute.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Failure reasons are cut to this many characters, so that the count table stays a table.
const REASON_CHARS_MAX: usize = 80;

/// How one request ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The transfer's status in the answer (SUCCEEDED, FAILED with its reason, PROCESSING).
    Answered { status: String, reason: String },
    /// The call failed with this gRPC code (including the client's own deadline).
    Error { code: String },
    /// The open loop could not send it: `in_flight_max` requests were outstanding.
    NotSent,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Answered { status, .. } if status == "SUCCEEDED")
    }
}

/// One finished request inside the measured window.
#[derive(Clone, Debug)]
pub struct Sample {
    pub outcome: Outcome,
    /// From the scheduled send (open loop) or the send (closed loop) to the final answer.
    pub latency: Duration,
    /// Calls made for it (more than one only with retries).
    pub calls: u32,
}

/// Counts and histograms of a run's measured window.
#[derive(Clone, Debug)]
pub struct Recorder {
    latency_us: Histogram<u64>,
    latency_succeeded_us: Histogram<u64>,
    pub grpc_codes: BTreeMap<String, u64>,
    pub transfer_outcomes: BTreeMap<String, u64>,
    pub sent: u64,
    pub not_sent: u64,
    pub succeeded: u64,
    pub retries: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        let histogram = || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("bounds");
        Recorder {
            latency_us: histogram(),
            latency_succeeded_us: histogram(),
            grpc_codes: BTreeMap::new(),
            transfer_outcomes: BTreeMap::new(),
            sent: 0,
            not_sent: 0,
            succeeded: 0,
            retries: 0,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, sample: &Sample) {
        if sample.outcome == Outcome::NotSent {
            self.not_sent += 1;
            return;
        }
        self.sent += 1;
        self.retries += u64::from(sample.calls.saturating_sub(1));
        let us = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        let us = us.clamp(1, LATENCY_US_MAX);
        self.latency_us.saturating_record(us);
        match &sample.outcome {
            Outcome::Answered { status, reason } => {
                *self.grpc_codes.entry("OK".to_owned()).or_default() += 1;
                let key = if reason.is_empty() {
                    status.clone()
                } else {
                    format!("{status}: {reason}")
                };
                *self.transfer_outcomes.entry(key).or_default() += 1;
                if sample.outcome.succeeded() {
                    self.succeeded += 1;
                    self.latency_succeeded_us.saturating_record(us);
                }
            }
            Outcome::Error { code } => {
                *self.grpc_codes.entry(code.clone()).or_default() += 1;
            }
            Outcome::NotSent => unreachable!("counted above"),
        }
    }

    /// Answers of any kind (gRPC OK or an error status).
    pub fn answered(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn latency(&self) -> Percentiles {
        Percentiles::of(&self.latency_us)
    }

    pub fn latency_succeeded(&self) -> Percentiles {
        Percentiles::of(&self.latency_succeeded_us)
    }
}

/// A failure reason without what differs from one user to the next (the user id, which
/// rate-limit and limit messages name), so that equal reasons are counted together.
pub fn normalize_reason(reason: &str, user_id: &str) -> String {
    let generic = if user_id.is_empty() {
        reason.to_owned()
    } else {
        reason.replace(user_id, "<user>")
    };
    generic.chars().take(REASON_CHARS_MAX).collect()
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Per-second figures of a measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// What the schedule asked for (open loop), or what was sent (closed loop).
    pub offered_per_s: f64,
    /// Requests that actually left.
    pub sent_per_s: f64,
    /// SUCCEEDED transfers per second.
    pub goodput_per_s: f64,
}

impl Rates {
    /// `scheduled` requests were due in a window of `window`, `sent` left, `succeeded`
    /// transfers SUCCEEDED.
    pub fn of(scheduled: u64, sent: u64, succeeded: u64, window: Duration) -> Rates {
        let s = window.as_secs_f64();
        if s <= 0.0 {
            return Rates::default();
        }
        Rates {
            offered_per_s: scheduled as f64 / s,
            sent_per_s: sent as f64 / s,
            goodput_per_s: succeeded as f64 / s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: &str, reason: &str, ms: u64) -> Sample {
        Sample {
            outcome: Outcome::Answered {
                status: status.into(),
                reason: reason.into(),
            },
            latency: Duration::from_millis(ms),
            calls: 1,
        }
    }

    #[test]
    fn outcomes_are_counted_by_code_and_status() {
        let mut r = Recorder::default();
        for ms in 1..=98 {
            r.record(&answered("SUCCEEDED", "", ms));
        }
        r.record(&answered("FAILED", "RATE_LIMITED", 5));
        r.record(&Sample {
            outcome: Outcome::Error {
                code: "UNAVAILABLE".into(),
            },
            latency: Duration::from_millis(1000),
            calls: 3,
        });
        r.record(&Sample {
            outcome: Outcome::NotSent,
            latency: Duration::ZERO,
            calls: 0,
        });
        assert_eq!(r.sent, 100);
        assert_eq!(r.not_sent, 1);
        assert_eq!(r.answered(), 100);
        assert_eq!(r.succeeded, 98);
        assert_eq!(r.retries, 2);
        assert_eq!(r.grpc_codes["OK"], 99);
        assert_eq!(r.grpc_codes["UNAVAILABLE"], 1);
        assert_eq!(r.transfer_outcomes["SUCCEEDED"], 98);
        assert_eq!(r.transfer_outcomes["FAILED: RATE_LIMITED"], 1);
        let all = r.latency();
        assert_eq!(all.count, 100);
        // 100 samples: 1..=98 ms, 5 ms and 1000 ms; the median is about 50 ms.
        assert!((all.p50_ms - 50.0).abs() < 1.0, "{all:?}");
        assert!((all.max_ms - 1000.0).abs() < 1.0, "{all:?}");
        let ok = r.latency_succeeded();
        assert_eq!(ok.count, 98);
        assert!((ok.max_ms - 98.0).abs() < 0.1, "{ok:?}");
        assert!((ok.p99_ms - 98.0).abs() < 0.1, "{ok:?}");
    }

    #[test]
    fn rates_are_per_second_of_the_window() {
        let r = Rates::of(1000, 900, 450, Duration::from_secs(10));
        assert_eq!(r.offered_per_s, 100.0);
        assert_eq!(r.sent_per_s, 90.0);
        assert_eq!(r.goodput_per_s, 45.0);
        assert_eq!(Rates::of(1, 1, 1, Duration::ZERO), Rates::default());
    }

    #[test]
    fn reasons_lose_the_user_id_and_length() {
        assert_eq!(
            normalize_reason("user load-00001 reached the limit", "load-00001"),
            "user <user> reached the limit"
        );
        assert_eq!(normalize_reason(&"x".repeat(200), "u").len(), 80);
        assert_eq!(Percentiles::of(&Histogram::new(3).unwrap()).count, 0);
    }
}
