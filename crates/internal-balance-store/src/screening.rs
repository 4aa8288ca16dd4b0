//! The balance store's [`Screening`]: counts what the rules need inside the reserve's
//! transaction, then applies the pure [`rules::evaluate`].
//!
//! On PostgreSQL the account row is locked before this runs, so concurrent reserves to
//! the same account count each other; reserves by one user to different accounts may
//! race past the rate limit by a few (the limit is a brake, not a balance store invariant).

use std::sync::Arc;

use banktransfer_protocol::reservation::Terms;
use participant::Screening;
use participant::screening::Verdict;
use sqlx::AnyConnection;

use participant::store::sql_ms;

use crate::rules::{self, Counts, DAY_MS, Rules};

/// Reservations by one user inside the window, whatever became of them.
const COUNT_RESERVES_BY_USER: &str =
    "SELECT COUNT(*) FROM reservations WHERE user_id = $1 AND created_at_ms > $2";

/// Credits held or confirmed to one account inside the window. PostgreSQL's SUM of a
/// BIGINT is NUMERIC: cast back, since the Any driver decodes BIGINT.
const SUM_INBOUND_TO_ACCOUNT: &str = "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) \
     FROM reservations WHERE account_id = $1 AND status IN ('held', 'confirmed') \
     AND created_at_ms > $2";

#[derive(Clone, Debug)]
pub struct BalanceStoreScreening {
    rules: Arc<Rules>,
}

impl BalanceStoreScreening {
    /// `rules` must be validated.
    pub fn new(rules: Rules) -> BalanceStoreScreening {
        BalanceStoreScreening {
            rules: Arc::new(rules),
        }
    }
}

impl Screening for BalanceStoreScreening {
    async fn screen(&self, conn: &mut AnyConnection, terms: &Terms, now_ms: u64) -> Verdict {
        // Window starts as the database stores times (BIGINT epoch ms); they may be
        // negative on a clock near the epoch, which matches nothing.
        let now = sql_ms(now_ms);
        let (reserves_in_window,): (i64,) = sqlx::query_as(COUNT_RESERVES_BY_USER)
            .bind(terms.user_id.as_str())
            .bind(now - sql_ms(self.rules.rate_limit_window_ms))
            .fetch_one(&mut *conn)
            .await?;
        let (inbound_last_day_minor,): (i64,) = sqlx::query_as(SUM_INBOUND_TO_ACCOUNT)
            .bind(terms.account_id.as_str())
            .bind(now - sql_ms(DAY_MS))
            .fetch_one(&mut *conn)
            .await?;
        let counts = Counts {
            reserves_in_window,
            inbound_last_day_minor,
        };
        let verdict = rules::evaluate(&self.rules, terms, counts);
        if let Err(refusal) = &verdict {
            tracing::info!(
                ?counts,
                reason = refusal.reason.as_str(),
                "screening refused"
            );
        }
        Ok(verdict)
    }
}
