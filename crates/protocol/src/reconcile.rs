//! The reconciler's decisions: which transfers it takes over and when it tries again.

use crate::transfer::RecordedState;

/// Validated once at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// An undecided transfer older than this is aborted by the reconciler. Longer than
    /// the gateway's whole budget, so a live request decides first in the normal case;
    /// the compare-and-set makes a race harmless either way.
    pub abort_after_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        abort_after_ms: 2_000,
        backoff_initial_ms: 200,
        backoff_max_ms: 30_000,
    };

    pub fn validate(&self, gateway_budget_ms: u64) -> Result<(), String> {
        if self.abort_after_ms <= gateway_budget_ms {
            return Err(format!(
                "abort_after_ms ({}) must exceed the gateway's budget ({gateway_budget_ms} ms)",
                self.abort_after_ms
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > self.backoff_max_ms {
            return Err(format!(
                "backoff: need 0 < backoff_initial_ms ({}) <= backoff_max_ms ({})",
                self.backoff_initial_ms, self.backoff_max_ms
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

pub fn takeover(
    recorded: RecordedState,
    created_at_ms: u64,
    now_ms: u64,
    policy: &RetryPolicy,
) -> Takeover {
    match recorded {
        RecordedState::Started if now_ms.saturating_sub(created_at_ms) >= policy.abort_after_ms => {
            Takeover::Abort
        }
        RecordedState::Started => Takeover::Wait,
        RecordedState::Committed | RecordedState::Aborted => Takeover::Finish,
        RecordedState::Succeeded | RecordedState::Failed => Takeover::Done,
    }
}

/// When to try an unfinished transfer again after `attempts` failed attempts: exponential
/// backoff capped at `backoff_max_ms`, with "equal jitter" (half fixed, half random) so
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
        .backoff_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(policy.backoff_max_ms);
    let half = base / 2;
    now_ms + half + half * u64::from(jitter_permille) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_undecided_transfers_are_aborted() {
        let p = RetryPolicy::DEFAULT;
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
    fn policy_must_outlast_the_gateway_budget() {
        assert!(RetryPolicy::DEFAULT.validate(200).is_ok());
        assert!(RetryPolicy::DEFAULT.validate(2_000).is_err());
        let bad = RetryPolicy {
            backoff_initial_ms: 0,
            ..RetryPolicy::DEFAULT
        };
        assert!(bad.validate(200).is_err());
    }
}
