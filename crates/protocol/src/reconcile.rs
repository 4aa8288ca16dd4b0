//! Taking over a transfer its own request no longer drives: when an undecided transfer is
//! stale (one rule, for the reconciler and for a replayed request alike), the reason an
//! abort of it records, and when the reconciler tries an unfinished transfer again.

use crate::budget::BudgetPolicy;
use crate::transfer::RecordedState;

/// Validated once at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff_ms_initial: u64,
    pub backoff_ms_max: u64,
}

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        backoff_ms_initial: 200,
        backoff_ms_max: 30_000,
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.backoff_ms_initial == 0 || self.backoff_ms_initial > self.backoff_ms_max {
            return Err(format!(
                "backoff: need 0 < backoff_ms_initial ({}) <= backoff_ms_max ({})",
                self.backoff_ms_initial, self.backoff_ms_max
            ));
        }
        Ok(())
    }
}

/// What the reconciler does with one transfer it found unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Undecided, but its own driver may still be deciding: leave it.
    Wait,
    /// Undecided for too long: record an abort (compare-and-set), then cancel both legs.
    Abort,
    /// Decided but not acknowledged by both legs: confirm or cancel them again.
    Finish,
    /// Nothing to do.
    Done,
}

/// The staleness rule: an undecided transfer is aborted once it is older than
/// [`BudgetPolicy::stale_after_ms`]; before that its own request may still decide it.
pub fn takeover(
    recorded: RecordedState,
    created_at_ms: u64,
    now_ms: u64,
    budget: &BudgetPolicy,
) -> Takeover {
    match recorded {
        RecordedState::Started if now_ms >= stale_at_ms(created_at_ms, budget) => Takeover::Abort,
        RecordedState::Started => Takeover::Wait,
        RecordedState::Committed | RecordedState::Aborted => Takeover::Finish,
        RecordedState::Succeeded | RecordedState::Failed => Takeover::Done,
    }
}

/// When a transfer created at `created_at_ms` turns stale if still undecided: the time to
/// look at it again after [`Takeover::Wait`].
pub fn stale_at_ms(created_at_ms: u64, budget: &BudgetPolicy) -> u64 {
    created_at_ms.saturating_add(budget.stale_after_ms())
}

/// Who aborts a stale transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortedBy {
    Reconciler,
    /// A replay of the original request (same idempotency key) found it stale.
    Replay,
}

/// The failure reason recorded with the abort of a stale transfer.
pub fn stale_abort_reason(budget: &BudgetPolicy, by: AbortedBy) -> String {
    let who = match by {
        AbortedBy::Reconciler => "the reconciler",
        AbortedBy::Replay => "a retry of the request",
    };
    format!(
        "not decided within {} ms: aborted by {who}",
        budget.stale_after_ms()
    )
}

/// When to try an unfinished transfer again after `attempts` failed attempts: exponential
/// backoff capped at `backoff_ms_max`, with "equal jitter" (half fixed, half random) so
/// that replicas retrying the same outage do not stampede. `jitter_permille` in 0..=1000
/// is the caller's random draw.
pub fn next_attempt_at_ms(
    now_ms: u64,
    attempts: u32,
    policy: &RetryPolicy,
    jitter_permille: u16,
) -> u64 {
    assert!(jitter_permille <= 1000);
    let exponent = attempts.min(20);
    let base = policy
        .backoff_ms_initial
        .saturating_mul(1u64 << exponent)
        .min(policy.backoff_ms_max);
    let half = base / 2;
    now_ms + half + half * u64::from(jitter_permille) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_undecided_transfers_are_aborted() {
        let p = BudgetPolicy::DEFAULT;
        assert_eq!(
            takeover(RecordedState::Started, 1_000, 2_999, &p),
            Takeover::Wait
        );
        assert_eq!(
            takeover(RecordedState::Started, 1_000, 3_000, &p),
            Takeover::Abort
        );
        assert_eq!(
            takeover(RecordedState::Committed, 1_000, 1_001, &p),
            Takeover::Finish
        );
        assert_eq!(
            takeover(RecordedState::Aborted, 1_000, 1_001, &p),
            Takeover::Finish
        );
        assert_eq!(
            takeover(RecordedState::Succeeded, 0, u64::MAX, &p),
            Takeover::Done
        );
        // A clock that went backwards never aborts early.
        assert_eq!(
            takeover(RecordedState::Started, 5_000, 1_000, &p),
            Takeover::Wait
        );
    }

    #[test]
    fn backoff_grows_then_caps_and_jitter_stays_within_half() {
        let p = RetryPolicy::DEFAULT;
        assert_eq!(next_attempt_at_ms(0, 0, &p, 0), 100);
        assert_eq!(next_attempt_at_ms(0, 0, &p, 1000), 200);
        assert_eq!(next_attempt_at_ms(0, 3, &p, 1000), 1_600);
        assert_eq!(next_attempt_at_ms(0, 10, &p, 1000), 30_000);
        assert_eq!(next_attempt_at_ms(0, u32::MAX, &p, 0), 15_000);
    }

    #[test]
    fn staleness_follows_the_budget_so_no_live_request_is_aborted() {
        let p = BudgetPolicy {
            total_ms: 3_000,
            stale_margin_ms: 1_000,
            ..BudgetPolicy::DEFAULT
        };
        // Still within reach of a request that arrived with the transfer.
        assert_eq!(
            takeover(RecordedState::Started, 1_000, 1_000 + 3_000, &p),
            Takeover::Wait
        );
        assert_eq!(stale_at_ms(1_000, &p), 5_000);
        assert_eq!(
            takeover(RecordedState::Started, 1_000, 5_000, &p),
            Takeover::Abort
        );
    }

    #[test]
    fn both_takeovers_record_the_threshold_and_who_aborted() {
        let p = BudgetPolicy::DEFAULT;
        assert_eq!(
            stale_abort_reason(&p, AbortedBy::Reconciler),
            "not decided within 2000 ms: aborted by the reconciler"
        );
        assert_eq!(
            stale_abort_reason(&p, AbortedBy::Replay),
            "not decided within 2000 ms: aborted by a retry of the request"
        );
    }

    #[test]
    fn backoff_policy_is_validated() {
        assert!(RetryPolicy::DEFAULT.validate().is_ok());
        let bad = RetryPolicy {
            backoff_ms_initial: 0,
            ..RetryPolicy::DEFAULT
        };
        assert!(bad.validate().is_err());
        let inverted = RetryPolicy {
            backoff_ms_initial: 2_000,
            backoff_ms_max: 1_000,
        };
        assert!(inverted.validate().is_err());
    }
}
