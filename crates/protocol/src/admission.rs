//! Admission control for ApproveTransfer: what the gateway refuses at once
//! (RESOURCE_EXHAUSTED, before the transfer's intent is written) so that what it admits
//! is served within its budget, instead of admitting everything and abandoning most of it
//! in the database pool's queue (congestion collapse).
//!
//! Two checks, in this order, and a back-off hint for what is refused:
//! - Deadline: a request whose remaining budget is shorter than the expected service time
//!   ([`service_time`]: the p90 of recent successful drives) would most likely miss it; it
//!   is refused rather than started and abandoned.
//! - Concurrency: at most [`limit::AdaptiveLimit::limit`] drives at once; the limit adapts
//!   to the drives' latencies ([`limit`]).
//! - The pushback (gRFC A6 `grpc-retry-pushback-ms`): about one expected service time,
//!   longer while refusals outnumber the limit, within the policy's bounds.
//!
//! Pure and deterministic: the caller passes `now_ms`, remaining budgets and latencies.
//! The gateway keeps one [`Admission`] per process behind a mutex.

pub mod limit;
pub mod service_time;

use limit::{AdaptiveLimit, LimitPolicy};
use service_time::ServiceTimeEstimate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionPolicy {
    pub limit: LimitPolicy,
    /// Bounds of the back-off hint sent with a refusal.
    pub retry_pushback_ms_min: u64,
    pub retry_pushback_ms_max: u64,
}

impl AdmissionPolicy {
    pub const DEFAULT: AdmissionPolicy = AdmissionPolicy {
        limit: LimitPolicy::DEFAULT,
        retry_pushback_ms_min: 100,
        retry_pushback_ms_max: 2_000,
    };

    pub fn validate(&self) -> Result<(), String> {
        self.limit.validate()?;
        if self.retry_pushback_ms_min == 0
            || self.retry_pushback_ms_min > self.retry_pushback_ms_max
        {
            return Err(format!(
                "admission: 0 < retry_pushback_ms_min ({}) <= retry_pushback_ms_max ({}) must hold",
                self.retry_pushback_ms_min, self.retry_pushback_ms_max
            ));
        }
        Ok(())
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `limit` drives are running already.
    AtCapacity { limit: u32 },
    /// The request has `remaining_ms` left; drives take about `expected_ms`.
    DeadlineTooShort { remaining_ms: u64, expected_ms: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    /// How long the client should wait before retrying.
    pub pushback_ms: u64,
}

/// How an admitted drive ended, as the limiter and the estimator see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveEnd {
    /// SUCCEEDED: a service time for the estimate and a latency for the limiter.
    Succeeded,
    /// FAILED, PROCESSING or an error: a latency for the limiter only (see
    /// [`service_time`] for why).
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    policy: AdmissionPolicy,
    limit: AdaptiveLimit,
    service_time: ServiceTimeEstimate,
    in_flight: u32,
    /// Refusals since the limiter's current window opened (scales the pushback).
    refused_in_window: u32,
}

impl Admission {
    pub fn new(policy: AdmissionPolicy, now_ms: u64) -> Admission {
        assert!(
            policy.validate().is_ok(),
            "an invalid admission policy: {policy:?}"
        );
        Admission {
            policy,
            limit: AdaptiveLimit::new(policy.limit, now_ms),
            service_time: ServiceTimeEstimate::new(),
            in_flight: 0,
            refused_in_window: 0,
        }
    }

    /// Admits a drive whose request has `remaining_ms` of budget left at `now_ms`, or
    /// says why not.
    /// An admitted drive must end with exactly one [`Admission::handle_end`] or
    /// [`Admission::handle_abandon`].
    pub fn try_admit(&mut self, now_ms: u64, remaining_ms: u64) -> Result<(), Refused> {
        self.service_time.expire_if_stale(now_ms);
        let refusal = match self.service_time.p90_ms() {
            Some(expected_ms) if remaining_ms < expected_ms => Some(Refusal::DeadlineTooShort {
                remaining_ms,
                expected_ms,
            }),
            _ if self.in_flight >= self.limit.limit() => Some(Refusal::AtCapacity {
                limit: self.limit.limit(),
            }),
            _ => None,
        };
        if let Some(refusal) = refusal {
            self.refused_in_window = self.refused_in_window.saturating_add(1);
            return Err(Refused {
                refusal,
                pushback_ms: self.pushback_ms(),
            });
        }
        self.in_flight += 1;
        self.limit.handle_in_flight(self.in_flight);
        Ok(())
    }

    /// An admitted drive ended after `latency_ms`.
    pub fn handle_end(&mut self, now_ms: u64, latency_ms: u64, end: DriveEnd) {
        self.release();
        if end == DriveEnd::Succeeded {
            self.service_time.handle_success(now_ms, latency_ms);
        }
        if self.limit.handle_sample(now_ms, latency_ms, self.in_flight) {
            self.refused_in_window = 0;
        }
    }

    /// An admitted request ended without a drive to learn from (it found its key taken,
    /// or its caller went away).
    pub fn handle_abandon(&mut self) {
        self.release();
    }

    fn release(&mut self) {
        assert!(self.in_flight > 0, "a drive ended that was never admitted");
        self.in_flight -= 1;
    }

    /// The back-off hint for a refusal now: about one expected service time (a slot frees
    /// up about that often per drive), times one plus the refusals per slot in this
    /// window, within the policy's bounds.
    pub fn pushback_ms(&self) -> u64 {
        let expected_ms = self
            .service_time
            .p90_ms()
            .unwrap_or(self.policy.limit.latency_target_ms_min);
        let pressure = 1 + u64::from(self.refused_in_window / self.limit.limit());
        expected_ms.saturating_mul(pressure).clamp(
            self.policy.retry_pushback_ms_min,
            self.policy.retry_pushback_ms_max,
        )
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub fn limit(&self) -> u32 {
        self.limit.limit()
    }

    pub fn expected_service_ms(&self) -> Option<u64> {
        self.service_time.p90_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn admission() -> Admission {
        Admission::new(AdmissionPolicy::DEFAULT, 0)
    }

    #[test]
    fn refuses_beyond_the_limit_and_admits_again_once_a_drive_ends() {
        let mut a = admission();
        for _ in 0..a.limit() {
            a.try_admit(0, 190).unwrap();
        }
        let refused = a.try_admit(0, 190).unwrap_err();
        assert_eq!(refused.refusal, Refusal::AtCapacity { limit: 32 });
        assert_eq!(refused.pushback_ms, 100);
        a.handle_end(10, 5, DriveEnd::Succeeded);
        a.try_admit(0, 190).unwrap();
        a.handle_abandon();
        a.try_admit(0, 190).unwrap();
        assert_eq!(a.in_flight(), 32);
    }

    #[test]
    fn refuses_a_request_whose_budget_cannot_cover_the_expected_service_time() {
        let mut a = admission();
        // No estimate yet: admitted however short.
        a.try_admit(0, 1).unwrap();
        a.handle_end(1, 40, DriveEnd::Succeeded);
        for i in 0..service_time::SAMPLES_MIN as u64 {
            a.try_admit(0, 190).unwrap();
            a.handle_end(i, 40, DriveEnd::Succeeded);
        }
        assert_eq!(a.expected_service_ms(), Some(40));
        assert_eq!(
            a.try_admit(0, 39).unwrap_err().refusal,
            Refusal::DeadlineTooShort {
                remaining_ms: 39,
                expected_ms: 40
            }
        );
        a.try_admit(0, 40).unwrap();
        assert_eq!(a.in_flight(), 1);
    }

    /// An estimate longer than any budget (learnt in a slow spell) refuses everyone, so no
    /// drive succeeds to correct it: it must lapse on its own, and admission resume.
    #[test]
    fn a_stale_estimate_cannot_refuse_everyone_for_ever() {
        let mut a = admission();
        for i in 0..service_time::SAMPLES_MAX as u64 {
            a.try_admit(i, 300).unwrap();
            a.handle_end(i, 250, DriveEnd::Succeeded);
        }
        let last = service_time::SAMPLES_MAX as u64 - 1;
        for now in [last + 1, last + service_time::STALE_AFTER_MS] {
            assert!(matches!(
                a.try_admit(now, 199).unwrap_err().refusal,
                Refusal::DeadlineTooShort {
                    expected_ms: 250,
                    ..
                }
            ));
        }
        a.try_admit(last + service_time::STALE_AFTER_MS + 1, 199)
            .unwrap();
        assert_eq!(a.expected_service_ms(), None);
    }

    #[test]
    fn drives_that_did_not_succeed_are_no_service_time() {
        let mut a = admission();
        for i in 0..100 {
            a.try_admit(0, 190).unwrap();
            a.handle_end(i, 190, DriveEnd::Other);
        }
        assert_eq!(a.expected_service_ms(), None);
        a.try_admit(0, 5).unwrap();
    }

    #[test]
    fn the_pushback_grows_with_the_refusals_within_its_bounds() {
        let mut a = admission();
        for _ in 0..a.limit() {
            a.try_admit(0, 190).unwrap();
        }
        let first = a.try_admit(0, 190).unwrap_err().pushback_ms;
        let mut last = first;
        for _ in 0..10_000 {
            last = a.try_admit(0, 190).unwrap_err().pushback_ms;
        }
        assert!(last > first, "{last} after {first}");
        assert_eq!(last, AdmissionPolicy::DEFAULT.retry_pushback_ms_max);
    }

    #[test]
    #[should_panic(expected = "never admitted")]
    fn ending_more_drives_than_were_admitted_is_a_bug() {
        admission().handle_abandon();
    }

    proptest! {
        /// Whatever the sequence, no more drives run than the limit allowed when each was
        /// admitted, and the count matches admissions minus ends.
        #[test]
        fn in_flight_never_exceeds_the_limit(
            steps in proptest::collection::vec((0u8..3, 0u64..300, 1u64..50), 1..500),
        ) {
            let mut a = admission();
            let mut now_ms = 0;
            let mut running = 0u32;
            for (kind, latency_ms, step_ms) in steps {
                now_ms += step_ms;
                match kind {
                    0 => {
                        let limit = a.limit();
                        if a.try_admit(now_ms, 190).is_ok() {
                            running += 1;
                            prop_assert!(running <= limit);
                        }
                    }
                    1 if running > 0 => {
                        running -= 1;
                        a.handle_end(now_ms, latency_ms, DriveEnd::Succeeded);
                    }
                    _ if running > 0 => {
                        running -= 1;
                        a.handle_end(now_ms, latency_ms, DriveEnd::Other);
                    }
                    _ => {}
                }
                prop_assert_eq!(a.in_flight(), running);
                let pushback = a.pushback_ms();
                prop_assert!((100..=2_000).contains(&pushback));
            }
        }
    }
}
