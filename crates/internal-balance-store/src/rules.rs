//! The balance store's rules for a new reserve (antifraud, limits, rate limit), as a pure
//! function of the rules, the terms and what the database counted. The counting is in
//! [`crate::screening`]; what a refusal means is the reservation book's business.
//!
//! Order of the checks, first refusal wins: blocked user, rate limit, max transfer, daily
//! inbound limit, review threshold. Hard limits come before the review flag because a
//! manual review could not lift them anyway.
//!
//! The limits are minor units of whatever currency the account holds.

use banktransfer_protocol::reservation::{Refusal, RefusalReason, Terms};
use serde::Deserialize;
use service_kit::config::ConfigError;

/// The daily inbound limit's trailing window.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// `[rules]` in the settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Rules {
    /// Largest single transfer; above it: LIMIT_EXCEEDED.
    pub transfer_minor_max: i64,
    /// Held plus confirmed credits to one account over the trailing 24 hours, including
    /// this one; above it: LIMIT_EXCEEDED.
    pub daily_inbound_limit_minor: i64,
    /// Amounts at or above it need a manual review: ANTIFRAUD.
    pub antifraud_review_threshold_minor: i64,
    /// Users whose transfers are always refused: ANTIFRAUD.
    pub blocked_users: Vec<String>,
    /// Reserves one user may make per window (any outcome counts); the next one:
    /// RATE_LIMITED.
    pub rate_limit_reserves_max: u32,
    pub rate_limit_window_ms: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            transfer_minor_max: 1_000_000,
            daily_inbound_limit_minor: 5_000_000,
            antifraud_review_threshold_minor: 90_000,
            blocked_users: Vec::new(),
            rate_limit_reserves_max: 30,
            rate_limit_window_ms: 60_000,
        }
    }
}

/// What the database counted for a reserve, within its transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reservations recorded for the user inside the rate limit window.
    pub reserves_in_window: i64,
    /// Held plus confirmed credits to the account over the trailing 24 hours.
    pub inbound_last_day_minor: i64,
}

impl Rules {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("rules.transfer_minor_max", self.transfer_minor_max),
            (
                "rules.daily_inbound_limit_minor",
                self.daily_inbound_limit_minor,
            ),
            (
                "rules.antifraud_review_threshold_minor",
                self.antifraud_review_threshold_minor,
            ),
            (
                "rules.rate_limit_reserves_max",
                i64::from(self.rate_limit_reserves_max),
            ),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be positive, got {value}"
                )));
            }
        }
        // Bounded by a day, so that `now_ms - window` cannot overflow and the window
        // stays a rate (per-day volume is the daily limit's job).
        if self.rate_limit_window_ms == 0 || self.rate_limit_window_ms > DAY_MS {
            return Err(ConfigError::Invalid(format!(
                "rules.rate_limit_window_ms must be between 1 and {DAY_MS}, got {}",
                self.rate_limit_window_ms
            )));
        }
        if self.blocked_users.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid(
                "rules.blocked_users lists an empty user id".into(),
            ));
        }
        Ok(())
    }
}

/// The verdict on a new reserve.
pub fn evaluate(rules: &Rules, terms: &Terms, counts: Counts) -> Result<(), Refusal> {
    let amount_minor = terms.amount.minor_units();
    if rules.blocked_users.contains(&terms.user_id) {
        return Err(Refusal::new(
            RefusalReason::Antifraud,
            format!("user {} is blocked", terms.user_id),
        ));
    }
    if counts.reserves_in_window >= i64::from(rules.rate_limit_reserves_max) {
        return Err(Refusal::new(
            RefusalReason::RateLimited,
            format!(
                "user {} reached the limit of {} transfers per {} ms: retry later",
                terms.user_id, rules.rate_limit_reserves_max, rules.rate_limit_window_ms
            ),
        ));
    }
    if amount_minor > rules.transfer_minor_max {
        return Err(Refusal::new(
            RefusalReason::LimitExceeded,
            format!(
                "amount {amount_minor} exceeds the {} minor units a single transfer may move",
                rules.transfer_minor_max
            ),
        ));
    }
    let inbound_minor = counts.inbound_last_day_minor.checked_add(amount_minor);
    if inbound_minor.is_none_or(|total| total > rules.daily_inbound_limit_minor) {
        return Err(Refusal::new(
            RefusalReason::LimitExceeded,
            // What the account already received is not told: it is the account's history,
            // and refusals travel back towards the client.
            format!(
                "account {} would receive more than {} minor units in 24 hours",
                terms.account_id, rules.daily_inbound_limit_minor
            ),
        ));
    }
    if amount_minor >= rules.antifraud_review_threshold_minor {
        return Err(Refusal::new(
            RefusalReason::Antifraud,
            "amount needs manual review",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use banktransfer_protocol::money::Money;

    use super::*;

    fn terms(user_id: &str, amount_minor: i64) -> Terms {
        Terms {
            account_id: "int-alice".into(),
            user_id: user_id.into(),
            amount: Money::positive(amount_minor, "USD").unwrap(),
        }
    }

    fn reason(result: Result<(), Refusal>) -> Option<RefusalReason> {
        result.err().map(|refusal| refusal.reason)
    }

    #[test]
    fn an_ordinary_transfer_passes() {
        let rules = Rules::default();
        assert_eq!(
            evaluate(&rules, &terms("alice", 10_000), Counts::default()),
            Ok(())
        );
    }

    #[test]
    fn amounts_at_or_above_the_review_threshold_need_review() {
        let rules = Rules::default();
        let at = evaluate(&rules, &terms("alice", 90_000), Counts::default()).unwrap_err();
        assert_eq!(at.reason, RefusalReason::Antifraud);
        assert_eq!(at.message, "amount needs manual review");
        assert_eq!(
            evaluate(&rules, &terms("alice", 89_999), Counts::default()),
            Ok(())
        );
    }

    #[test]
    fn blocked_users_are_refused_whatever_the_amount() {
        let rules = Rules {
            blocked_users: vec!["mallory".into()],
            ..Rules::default()
        };
        assert_eq!(
            reason(evaluate(&rules, &terms("mallory", 1), Counts::default())),
            Some(RefusalReason::Antifraud)
        );
        assert_eq!(
            evaluate(&rules, &terms("alice", 1), Counts::default()),
            Ok(())
        );
    }

    #[test]
    fn the_largest_transfer_is_a_hard_limit() {
        let rules = Rules {
            antifraud_review_threshold_minor: 5_000_000,
            ..Rules::default()
        };
        assert_eq!(
            evaluate(&rules, &terms("alice", 1_000_000), Counts::default()),
            Ok(())
        );
        assert_eq!(
            reason(evaluate(
                &rules,
                &terms("alice", 1_000_001),
                Counts::default()
            )),
            Some(RefusalReason::LimitExceeded)
        );
    }

    #[test]
    fn the_daily_limit_counts_this_transfer_too() {
        let rules = Rules {
            daily_inbound_limit_minor: 1_000,
            ..Rules::default()
        };
        let counts = |inbound_last_day_minor| Counts {
            inbound_last_day_minor,
            ..Counts::default()
        };
        assert_eq!(evaluate(&rules, &terms("alice", 400), counts(600)), Ok(()));
        let over = evaluate(&rules, &terms("alice", 401), counts(600)).unwrap_err();
        assert_eq!(over.reason, RefusalReason::LimitExceeded);
        assert!(
            !over.message.contains("600"),
            "what the account already received is not told: {}",
            over.message
        );
        assert_eq!(
            reason(evaluate(&rules, &terms("alice", 1), counts(i64::MAX))),
            Some(RefusalReason::LimitExceeded),
            "overflow is a refusal, not a panic"
        );
    }

    #[test]
    fn the_reserve_after_the_allowed_number_is_rate_limited() {
        let rules = Rules {
            rate_limit_reserves_max: 3,
            ..Rules::default()
        };
        let counts = |reserves_in_window| Counts {
            reserves_in_window,
            ..Counts::default()
        };
        assert_eq!(evaluate(&rules, &terms("alice", 1), counts(2)), Ok(()));
        assert_eq!(
            reason(evaluate(&rules, &terms("alice", 1), counts(3))),
            Some(RefusalReason::RateLimited)
        );
    }

    #[test]
    fn the_first_failing_rule_in_order_decides() {
        let rules = Rules {
            blocked_users: vec!["mallory".into()],
            rate_limit_reserves_max: 1,
            ..Rules::default()
        };
        let busy = Counts {
            reserves_in_window: 5,
            inbound_last_day_minor: 0,
        };
        // Blocked beats rate limited; rate limited beats the amount rules.
        assert_eq!(
            reason(evaluate(&rules, &terms("mallory", 2_000_000), busy)),
            Some(RefusalReason::Antifraud)
        );
        assert_eq!(
            reason(evaluate(&rules, &terms("alice", 2_000_000), busy)),
            Some(RefusalReason::RateLimited)
        );
        // Above both the max transfer and the review threshold: the hard limit answers.
        assert_eq!(
            reason(evaluate(
                &rules,
                &terms("alice", 2_000_000),
                Counts::default()
            )),
            Some(RefusalReason::LimitExceeded)
        );
    }

    #[test]
    fn rules_must_be_positive_and_the_window_bounded() {
        assert!(Rules::default().validate().is_ok());
        let invalid = [
            Rules {
                transfer_minor_max: 0,
                ..Rules::default()
            },
            Rules {
                daily_inbound_limit_minor: -1,
                ..Rules::default()
            },
            Rules {
                antifraud_review_threshold_minor: 0,
                ..Rules::default()
            },
            Rules {
                rate_limit_reserves_max: 0,
                ..Rules::default()
            },
            Rules {
                rate_limit_window_ms: 0,
                ..Rules::default()
            },
            Rules {
                rate_limit_window_ms: DAY_MS + 1,
                ..Rules::default()
            },
            Rules {
                blocked_users: vec![String::new()],
                ..Rules::default()
            },
        ];
        for rules in invalid {
            assert!(rules.validate().is_err(), "{rules:?} accepted");
        }
    }
}
