//! ApproveTransfer's admission control: the `[admission]` settings and the per-process
//! [`Gate`] that refuses at once, with RESOURCE_EXHAUSTED and a `grpc-retry-pushback-ms`
//! hint (gRFC A6), what the gateway cannot serve within the request's budget, before its
//! intent is written (nothing recorded, nobody called).
//!
//! In the order the service applies them:
//! 1. Per user: at most `per_user_in_flight_max` ApproveTransfer calls of one user at once
//!    in this process, so that one client's flood (or tight retry loop) cannot take the
//!    capacity everyone else shares.
//! 2. (A replay of a transfer being driven here waits for that drive: `crate::live`; it
//!    needs no admission, since it costs no database work.)
//! 3. Deadline and concurrency: `banktransfer_protocol::admission` decides (pure); the
//!    [`DrivePermit`] it grants is held for the drive, and the drive's latency is fed
//!    back when it ends.
//!
//! Every map is bounded: the per-user counts hold only users with a call in flight, and
//! calls in flight are bounded by the gateway's `in_flight_max` semaphore, acquired first;
//! the map refuses beyond that many users all the same.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use banktransfer_protocol::admission::limit::LimitPolicy;
use banktransfer_protocol::admission::{Admission, AdmissionPolicy, DriveEnd, Refusal, Refused};
use banktransfer_protocol::budget::Budget;
use banktransfer_protocol::transfer::RecordedState;
use serde::Deserialize;
use service_kit::clock::SharedClock;

use crate::metrics::{Refusal as Counted, count_refusal};
use tonic::Status;

use crate::approve::{Approval, ApproveError};

/// The trailing metadata key of gRFC A6: how long a client should wait before retrying.
pub const RETRY_PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// `[admission]`: ApproveTransfer's admission control (every key has a default).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AdmissionSection {
    /// The adaptive concurrency limit on drives in flight: where it starts and its bounds.
    pub limit_initial: u32,
    pub limit_min: u32,
    pub limit_max: u32,
    /// The limit grows while drives' mean latency stays within this percentage of the
    /// no-load latency...
    pub latency_tolerance_percent: u32,
    /// ... or below this many milliseconds, whichever is more.
    pub latency_target_ms_min: u64,
    /// Mean latency above which the limit shrinks multiplicatively at once; below the
    /// budget's `total_ms`.
    pub latency_ms_max: u64,
    /// The limit moves once per window: at least this long and this many drives.
    pub window_ms: u64,
    pub window_samples_min: u32,
    /// ApproveTransfer calls of one user in flight at once in this process.
    pub per_user_in_flight_max: u32,
    /// Bounds of the retry hint sent with every refusal.
    pub retry_pushback_ms_min: u64,
    pub retry_pushback_ms_max: u64,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        let policy = AdmissionPolicy::DEFAULT;
        let limit = policy.limit;
        AdmissionSection {
            limit_initial: limit.limit_initial,
            limit_min: limit.limit_min,
            limit_max: limit.limit_max,
            latency_tolerance_percent: limit.latency_tolerance_percent,
            latency_target_ms_min: limit.latency_target_ms_min,
            latency_ms_max: limit.latency_ms_max,
            window_ms: limit.window_ms,
            window_samples_min: limit.window_samples_min,
            per_user_in_flight_max: 16,
            retry_pushback_ms_min: policy.retry_pushback_ms_min,
            retry_pushback_ms_max: policy.retry_pushback_ms_max,
        }
    }
}

impl AdmissionSection {
    pub fn policy(&self) -> AdmissionPolicy {
        AdmissionPolicy {
            limit: LimitPolicy {
                limit_initial: self.limit_initial,
                limit_min: self.limit_min,
                limit_max: self.limit_max,
                latency_tolerance_percent: self.latency_tolerance_percent,
                latency_target_ms_min: self.latency_target_ms_min,
                latency_ms_max: self.latency_ms_max,
                window_ms: self.window_ms,
                window_samples_min: self.window_samples_min,
            },
            retry_pushback_ms_min: self.retry_pushback_ms_min,
            retry_pushback_ms_max: self.retry_pushback_ms_max,
        }
    }

    /// Checked once at start-up against the budget's `total_ms`; names the key to fix.
    pub fn validate(&self, budget_total_ms: u64) -> Result<(), String> {
        self.policy().validate()?;
        if self.per_user_in_flight_max == 0 {
            return Err("admission.per_user_in_flight_max must be at least 1".into());
        }
        if self.latency_ms_max >= budget_total_ms {
            return Err(format!(
                "admission.latency_ms_max ({}) must be below budget.total_ms ({budget_total_ms}): \
                 the limit must shrink before requests miss their budget",
                self.latency_ms_max
            ));
        }
        Ok(())
    }
}

/// The gateway's admission state: one per process.
pub struct Gate {
    admission: Mutex<Admission>,
    /// ApproveTransfer calls in flight per user; only users with at least one.
    users: Mutex<HashMap<String, u32>>,
    users_max: usize,
    per_user_in_flight_max: u32,
    clock: SharedClock,
}

/// Keeps one of a user's in-flight slots until dropped.
pub struct UserSlot<'a> {
    gate: &'a Gate,
    user_id: String,
}

/// An admitted drive; [`DrivePermit::end`] feeds its latency back. Dropped without it
/// (the caller went away), the slot is released and nothing is learnt.
pub struct DrivePermit<'a> {
    gate: &'a Gate,
    admitted_at_ms: u64,
    ended: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single step that cannot be left half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    /// `users_max`: the most users tracked at once (the gateway's `in_flight_max`).
    pub fn new(section: &AdmissionSection, users_max: usize, clock: SharedClock) -> Gate {
        Gate {
            admission: Mutex::new(Admission::new(section.policy(), clock.now_ms())),
            users: Mutex::new(HashMap::new()),
            users_max,
            per_user_in_flight_max: section.per_user_in_flight_max,
            clock,
        }
    }

    /// One of `user_id`'s in-flight slots, or RESOURCE_EXHAUSTED.
    pub fn enter_user(&self, user_id: &str) -> Result<UserSlot<'_>, Status> {
        let mut users = lock(&self.users);
        let tracked = users.len();
        let count = match users.get_mut(user_id) {
            Some(count) => count,
            None if tracked >= self.users_max => {
                drop(users);
                count_refusal(Counted::AtCapacity);
                return Err(self.at_capacity(lock(&self.admission).pushback_ms()));
            }
            None => users.entry(user_id.to_owned()).or_insert(0),
        };
        if *count >= self.per_user_in_flight_max {
            drop(users);
            count_refusal(Counted::PerUserInFlightMax);
            let pushback_ms = lock(&self.admission).pushback_ms();
            tracing::debug!("ApproveTransfer refused: the user's in-flight cap is reached");
            let mut status = Status::resource_exhausted(format!(
                "too many of your transfers are in progress at once (at most {}): retry after \
                 {pushback_ms} ms with the same idempotency key",
                self.per_user_in_flight_max
            ));
            set_pushback(&mut status, pushback_ms);
            return Err(status);
        }
        *count += 1;
        Ok(UserSlot {
            gate: self,
            user_id: user_id.to_owned(),
        })
    }

    /// Admits a drive for a request with `budget`, or RESOURCE_EXHAUSTED.
    pub fn admit(&self, budget: &Budget) -> Result<DrivePermit<'_>, Status> {
        let now_ms = self.clock.now_ms();
        let remaining_ms = Budget::remaining_ms(budget.settle_deadline_ms(), now_ms);
        let admitted = lock(&self.admission).try_admit(now_ms, remaining_ms);
        match admitted {
            Ok(()) => Ok(DrivePermit {
                gate: self,
                admitted_at_ms: now_ms,
                ended: false,
            }),
            Err(refused) => Err(self.refusal_status(refused)),
        }
    }

    fn refusal_status(&self, refused: Refused) -> Status {
        let Refused {
            refusal,
            pushback_ms,
        } = refused;
        match refusal {
            Refusal::AtCapacity { limit } => {
                count_refusal(Counted::AtCapacity);
                tracing::debug!(limit, "ApproveTransfer refused: at capacity");
                self.at_capacity(pushback_ms)
            }
            Refusal::DeadlineTooShort {
                remaining_ms,
                expected_ms,
            } => {
                count_refusal(Counted::DeadlineTooShort);
                tracing::debug!(
                    remaining_ms,
                    expected_ms,
                    "ApproveTransfer refused: its deadline is too short"
                );
                let mut status = Status::resource_exhausted(format!(
                    "the request's remaining deadline ({remaining_ms} ms) is shorter than \
                     transfers currently take ({expected_ms} ms); nothing was recorded: retry \
                     after {pushback_ms} ms with the same idempotency key and a deadline of at \
                     least {expected_ms} ms"
                ));
                set_pushback(&mut status, pushback_ms);
                status
            }
        }
    }

    fn at_capacity(&self, pushback_ms: u64) -> Status {
        let mut status = Status::resource_exhausted(format!(
            "the gateway is at capacity; nothing was recorded: retry after {pushback_ms} ms \
             with the same idempotency key"
        ));
        set_pushback(&mut status, pushback_ms);
        status
    }

    /// Drives in flight and the current limit (tests, logs).
    pub fn in_flight_and_limit(&self) -> (u32, u32) {
        let admission = lock(&self.admission);
        (admission.in_flight(), admission.limit())
    }
}

fn set_pushback(status: &mut Status, pushback_ms: u64) {
    status
        .metadata_mut()
        .insert(RETRY_PUSHBACK_HEADER, pushback_ms.into());
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        let mut users = lock(&self.gate.users);
        let count = users
            .get_mut(&self.user_id)
            .expect("a user slot is counted until dropped");
        assert!(*count > 0);
        *count -= 1;
        if *count == 0 {
            users.remove(&self.user_id);
        }
    }
}

impl DrivePermit<'_> {
    /// The request ended with `result`. Every drive's latency moves the limit, failures
    /// included: a drive that ran out of budget (PROCESSING, or an abort for the
    /// deadline) or met an overloaded store is the clearest sign of congestion, and
    /// learning only from successes would hide exactly the overload the limit is for.
    /// Only successes are service times (see `banktransfer_protocol::admission::service_time`).
    /// A request that drove nothing (a replay answered from the log, a reused key) teaches
    /// nothing.
    pub fn end(mut self, result: &Result<Approval, ApproveError>) {
        self.ended = true;
        let end = match result {
            Ok(Approval {
                record,
                drove: true,
            }) if record.state == RecordedState::Succeeded => Some(DriveEnd::Succeeded),
            Ok(Approval { drove: true, .. }) | Err(ApproveError::Store { .. }) => {
                Some(DriveEnd::Other)
            }
            // A replay that could not read the legs drove nothing either.
            Ok(Approval { drove: false, .. })
            | Err(ApproveError::KeyReused(_) | ApproveError::LegsUnreadable { .. }) => None,
        };
        let now_ms = self.gate.clock.now_ms();
        let latency_ms = now_ms.saturating_sub(self.admitted_at_ms);
        let mut admission = lock(&self.gate.admission);
        match end {
            Some(end) => admission.handle_end(now_ms, latency_ms, end),
            None => admission.handle_abandon(),
        }
    }
}

impl Drop for DrivePermit<'_> {
    fn drop(&mut self) {
        if !self.ended {
            lock(&self.gate.admission).handle_abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_protocol::budget::BudgetPolicy;
    use service_kit::clock::ManualClock;
    use std::sync::Arc;

    fn gate(section: AdmissionSection) -> Gate {
        Gate::new(&section, 8, Arc::new(ManualClock::new(1_000)))
    }

    fn pushback(status: &Status) -> u64 {
        status
            .metadata()
            .get(RETRY_PUSHBACK_HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn one_user_is_capped_and_others_are_not() {
        let gate = gate(AdmissionSection {
            per_user_in_flight_max: 2,
            ..AdmissionSection::default()
        });
        let a1 = gate.enter_user("alice").unwrap();
        let _a2 = gate.enter_user("alice").unwrap();
        let refused = gate.enter_user("alice").err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("same idempotency key"),
            "{}",
            refused.message()
        );
        assert_eq!(pushback(&refused), 100);
        let _b = gate.enter_user("bob").unwrap();
        drop(a1);
        let _a3 = gate.enter_user("alice").unwrap();
    }

    #[test]
    fn users_are_forgotten_when_their_last_call_ends_and_the_map_is_bounded() {
        let gate = gate(AdmissionSection::default());
        let slots: Vec<_> = (0..8)
            .map(|i| gate.enter_user(&format!("u{i}")).unwrap())
            .collect();
        assert_eq!(
            gate.enter_user("u8").err().unwrap().code(),
            tonic::Code::ResourceExhausted
        );
        drop(slots);
        assert!(lock(&gate.users).is_empty());
        gate.enter_user("u8").unwrap();
    }

    #[test]
    fn permits_are_released_whichever_way_the_request_ends() {
        let gate = gate(AdmissionSection {
            limit_min: 1,
            limit_initial: 2,
            ..AdmissionSection::default()
        });
        let budget = Budget::new(BudgetPolicy::DEFAULT, 1_000, None);
        let first = gate.admit(&budget).unwrap();
        let second = gate.admit(&budget).unwrap();
        let refused = gate.admit(&budget).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("at capacity"));
        assert!(pushback(&refused) >= 100);
        assert_eq!(gate.in_flight_and_limit(), (2, 2));
        drop(first);
        second.end(&Err(ApproveError::KeyReused("k".into())));
        assert_eq!(gate.in_flight_and_limit(), (0, 2));
    }

    #[test]
    fn validation_names_the_bad_key() {
        let bad = |edit: fn(&mut AdmissionSection)| {
            let mut s = AdmissionSection::default();
            edit(&mut s);
            s.validate(200).unwrap_err()
        };
        AdmissionSection::default().validate(200).unwrap();
        assert!(bad(|s| s.per_user_in_flight_max = 0).contains("per_user_in_flight_max"));
        assert!(bad(|s| s.latency_ms_max = 200).contains("latency_ms_max"));
        assert!(bad(|s| s.limit_min = 0).contains("limit_min"));
        assert!(bad(|s| s.retry_pushback_ms_min = 0).contains("retry_pushback_ms_min"));
    }
}
