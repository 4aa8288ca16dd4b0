//! The client's deadline budget, split between the protocol's phases.
//!
//! The API answers within `total_ms` (200 ms by default). Reserves must finish early
//! enough to leave time to record the decision; confirmations use whatever is left. Past
//! the reserve deadline without both holds, the coordinator aborts (always safe before a
//! commit); past the total with a commit recorded, it answers PROCESSING and the
//! reconciler finishes.
//!
//! The same policy says when an undecided transfer is abandoned
//! ([`BudgetPolicy::stale_after_ms`]): `stale_margin_ms` past the whole budget, so no
//! live request can still be deciding it. The gateway's replay path and the reconciler
//! both read it (`crate::reconcile::takeover`), from the one `[budget]` setting.

/// Budget policy; validated once at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// What the client is promised, end to end.
    pub total_ms: u64,
    /// Kept back from the reserve phase for recording the decision and confirming.
    pub after_reserve_ms: u64,
    /// Kept back at the very end for writing the answer.
    pub reply_margin_ms: u64,
    /// Waited past `total_ms` before an undecided transfer counts as abandoned: room for
    /// a slow decision write that outlived its request to land first (the
    /// compare-and-set makes a race harmless either way).
    pub stale_margin_ms: u64,
}

impl BudgetPolicy {
    pub const DEFAULT: BudgetPolicy = BudgetPolicy {
        total_ms: 200,
        after_reserve_ms: 60,
        reply_margin_ms: 10,
        stale_margin_ms: 1_800,
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.after_reserve_ms + self.reply_margin_ms >= self.total_ms {
            return Err(format!(
                "deadline budget: after_reserve_ms ({}) + reply_margin_ms ({}) must be below total_ms ({})",
                self.after_reserve_ms, self.reply_margin_ms, self.total_ms
            ));
        }
        if self.stale_margin_ms == 0 {
            return Err("deadline budget: stale_margin_ms must be positive".into());
        }
        Ok(())
    }

    /// Age (since the intent was recorded) at which an undecided transfer is abandoned:
    /// past every request's budget, whatever its client asked for.
    pub fn stale_after_ms(&self) -> u64 {
        self.total_ms.saturating_add(self.stale_margin_ms)
    }
}

/// One request's budget, anchored at the moment it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    policy: BudgetPolicy,
    started_at_ms: u64,
}

impl Budget {
    /// `client_deadline_ms` is the client's own gRPC deadline if it sent a shorter one.
    pub fn new(policy: BudgetPolicy, started_at_ms: u64, client_timeout_ms: Option<u64>) -> Budget {
        let total_ms = client_timeout_ms.map_or(policy.total_ms, |t| t.min(policy.total_ms));
        let scale = |part: u64| part * total_ms / policy.total_ms;
        Budget {
            policy: BudgetPolicy {
                total_ms,
                after_reserve_ms: scale(policy.after_reserve_ms),
                reply_margin_ms: scale(policy.reply_margin_ms),
                stale_margin_ms: policy.stale_margin_ms,
            },
            started_at_ms,
        }
    }

    /// Absolute time by which both reserves must have answered.
    pub fn reserve_deadline_ms(&self) -> u64 {
        self.started_at_ms + self.policy.total_ms - self.policy.after_reserve_ms
    }

    /// Absolute time by which confirmations must have answered.
    pub fn settle_deadline_ms(&self) -> u64 {
        self.started_at_ms + self.policy.total_ms - self.policy.reply_margin_ms
    }

    /// Milliseconds left until `deadline_ms`, zero when past.
    pub fn remaining_ms(deadline_ms: u64, now_ms: u64) -> u64 {
        deadline_ms.saturating_sub(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_split_leaves_time_for_the_decision() {
        BudgetPolicy::DEFAULT.validate().unwrap();
        let b = Budget::new(BudgetPolicy::DEFAULT, 1_000, None);
        assert_eq!(b.reserve_deadline_ms(), 1_140);
        assert_eq!(b.settle_deadline_ms(), 1_190);
        assert_eq!(Budget::remaining_ms(1_140, 1_100), 40);
        assert_eq!(Budget::remaining_ms(1_140, 1_200), 0);
    }

    #[test]
    fn a_shorter_client_deadline_shrinks_every_phase() {
        let b = Budget::new(BudgetPolicy::DEFAULT, 0, Some(100));
        assert_eq!(b.reserve_deadline_ms(), 70);
        assert_eq!(b.settle_deadline_ms(), 95);
        let longer = Budget::new(BudgetPolicy::DEFAULT, 0, Some(10_000));
        assert_eq!(longer.settle_deadline_ms(), 190);
    }

    #[test]
    fn inconsistent_policy_is_refused() {
        let bad = BudgetPolicy {
            total_ms: 50,
            after_reserve_ms: 45,
            reply_margin_ms: 10,
            stale_margin_ms: 1_000,
        };
        assert!(bad.validate().is_err());
        let never_stale = BudgetPolicy {
            stale_margin_ms: 0,
            ..BudgetPolicy::DEFAULT
        };
        assert!(
            never_stale
                .validate()
                .unwrap_err()
                .contains("stale_margin_ms")
        );
    }

    #[test]
    fn a_transfer_turns_stale_past_the_whole_budget() {
        assert_eq!(BudgetPolicy::DEFAULT.stale_after_ms(), 2_000);
        let longer = BudgetPolicy {
            total_ms: 3_000,
            ..BudgetPolicy::DEFAULT
        };
        assert!(longer.stale_after_ms() > longer.total_ms);
    }
}
