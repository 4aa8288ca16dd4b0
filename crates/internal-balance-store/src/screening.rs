//! The balance store's [`Screening`]: counts what the rules need inside the reserve's
//! transaction, then applies the pure [`rules::evaluate`].
//!
//! On PostgreSQL the account row is locked before this runs, so concurrent reserves to
//! the same account count each other; reserves by one user to different accounts may
//! race past the rate limit by a few (the limit is a brake, not a balance store invariant).

use std::sync::Arc;

use banktransfer_protocol::reservation::{Refusal, Terms};
use participant::Screening;
use participant::screening::{Verdict, Verdicts};
use sqlx::AnyConnection;

use participant::store::sql_ms;

use crate::rules::{self, Counts, DAY_MS, Rules};

/// Both counts for one reserve, in one statement (one round trip on PostgreSQL, where a
/// lone reserve is the common case at low load): the reservations by one user inside
/// the rate limit's window, whatever became of them, and the credits held or confirmed
/// to one account inside the last day. PostgreSQL's SUM of a BIGINT is NUMERIC: cast
/// back, since the Any driver decodes BIGINT.
const COUNT_ONE: &str = "SELECT \
     (SELECT COUNT(*) FROM reservations WHERE user_id = $1 AND created_at_ms > $2), \
     (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM reservations \
         WHERE account_id = $3 AND status IN ('held', 'confirmed') AND created_at_ms > $4)";

/// Both counts for many reserves in one statement: one JSON array of (user, account,
/// window starts) in, one row of counts per element out, in the array's order. Each
/// count is the same subquery as above, so each reserve gets what it would alone.
const COUNT_MANY_POSTGRES: &str = "SELECT \
     (SELECT COUNT(*) FROM reservations r WHERE r.user_id = q.user_id \
         AND r.created_at_ms > q.window_since), \
     (SELECT CAST(COALESCE(SUM(r.amount_minor), 0) AS BIGINT) FROM reservations r \
         WHERE r.account_id = q.account_id AND r.status IN ('held', 'confirmed') \
         AND r.created_at_ms > q.day_since) \
     FROM ROWS FROM (json_to_recordset(CAST($1 AS JSON)) AS (user_id TEXT, account_id TEXT, \
         window_since BIGINT, day_since BIGINT)) WITH ORDINALITY \
         AS q(user_id, account_id, window_since, day_since, n) \
     ORDER BY q.n";

const COUNT_MANY_SQLITE: &str = "SELECT \
     (SELECT COUNT(*) FROM reservations r WHERE r.user_id = q.value ->> '$.user_id' \
         AND r.created_at_ms > q.value ->> '$.window_since'), \
     (SELECT CAST(COALESCE(SUM(r.amount_minor), 0) AS BIGINT) FROM reservations r \
         WHERE r.account_id = q.value ->> '$.account_id' \
         AND r.status IN ('held', 'confirmed') \
         AND r.created_at_ms > q.value ->> '$.day_since') \
     FROM json_each($1) AS q ORDER BY q.key";

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

impl BalanceStoreScreening {
    /// The rules' verdict on `counts`, logged when it refuses.
    fn verdict(&self, terms: &Terms, counts: Counts) -> Result<(), Refusal> {
        let verdict = rules::evaluate(&self.rules, terms, counts);
        if let Err(refusal) = &verdict {
            tracing::info!(
                ?counts,
                reason = refusal.reason.as_str(),
                "screening refused"
            );
        }
        verdict
    }

    /// The start of each trailing window, as the database stores times (BIGINT epoch
    /// ms); negative on a clock near the epoch, which matches nothing.
    fn window_starts(&self, now_ms: u64) -> (i64, i64) {
        let now = sql_ms(now_ms);
        (
            now - sql_ms(self.rules.rate_limit_window_ms),
            now - sql_ms(DAY_MS),
        )
    }
}

impl Screening for BalanceStoreScreening {
    async fn screen(&self, conn: &mut AnyConnection, terms: &Terms, now_ms: u64) -> Verdict {
        let (window_since, day_since) = self.window_starts(now_ms);
        let (reserves_in_window, inbound_last_day_minor): (i64, i64) = sqlx::query_as(COUNT_ONE)
            .bind(terms.user_id.as_str())
            .bind(window_since)
            .bind(terms.account_id.as_str())
            .bind(day_since)
            .fetch_one(&mut *conn)
            .await?;
        let counts = Counts {
            reserves_in_window,
            inbound_last_day_minor,
        };
        Ok(self.verdict(terms, counts))
    }

    async fn screen_many(&self, conn: &mut AnyConnection, reserves: &[(&Terms, u64)]) -> Verdicts {
        if reserves.is_empty() {
            return Ok(Vec::new());
        }
        let query: Vec<serde_json::Value> = reserves
            .iter()
            .map(|(terms, now_ms)| {
                let (window_since, day_since) = self.window_starts(*now_ms);
                serde_json::json!({
                    "user_id": terms.user_id,
                    "account_id": terms.account_id,
                    "window_since": window_since,
                    "day_since": day_since,
                })
            })
            .collect();
        let sql = match conn.backend_name() {
            "PostgreSQL" => COUNT_MANY_POSTGRES,
            "SQLite" => COUNT_MANY_SQLITE,
            other => {
                return Err(sqlx::Error::Configuration(
                    format!("no screening statement for the {other} back end").into(),
                ));
            }
        };
        let rows: Vec<(i64, i64)> = sqlx::query_as(sql)
            .bind(serde_json::Value::Array(query).to_string())
            .fetch_all(&mut *conn)
            .await?;
        assert_eq!(
            rows.len(),
            reserves.len(),
            "the counts have one row per reserve"
        );
        Ok(reserves
            .iter()
            .zip(rows)
            .map(
                |((terms, _), (reserves_in_window, inbound_last_day_minor))| {
                    self.verdict(
                        terms,
                        Counts {
                            reserves_in_window,
                            inbound_last_day_minor,
                        },
                    )
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use banktransfer_protocol::money::Money;
    use banktransfer_protocol::reservation::RefusalReason;
    use service_kit::db::{self, PoolSettings};

    use super::*;

    /// The one-statement screening of many reserves gives each the verdict that its own
    /// two statements give, on both back ends, across windows, statuses and refusals.
    #[tokio::test]
    async fn screening_many_at_once_agrees_with_screening_each() {
        let rules = Rules {
            rate_limit_reserves_max: 3,
            rate_limit_window_ms: 1_000,
            daily_inbound_limit_minor: 100,
            ..Rules::default()
        };
        let screening = BalanceStoreScreening::new(rules);
        let now_ms = 3 * DAY_MS;
        for test_db in testkit::db::all("screen_many").await {
            let db = db::connect(&test_db.url, PoolSettings::default())
                .await
                .expect("connect");
            db::migrate(&db, &participant::MIGRATIONS)
                .await
                .expect("migrate");
            // Reservations at every distance from the windows' edges, in every status.
            let statuses = ["held", "confirmed", "cancelled", "refused"];
            let ages = [0, 1, 999, 1_000, 1_001, DAY_MS - 1, DAY_MS, DAY_MS + 1];
            for (n, age) in ages.iter().cycle().take(40).enumerate() {
                let status = statuses[n % statuses.len()];
                sqlx::query(
                    "INSERT INTO reservations (transfer_id, account_id, user_id, amount_minor, \
                     currency, status, refusal_reason, refusal_message, created_at_ms, \
                     updated_at_ms) VALUES ($1, $2, $3, $4, 'USD', $5, $6, $7, $8, $8)",
                )
                .bind(format!("t{n}"))
                .bind(format!("acc-{}", n % 3))
                .bind(format!("user-{}", n % 5))
                .bind(i64::try_from(1 + n * 3).unwrap())
                .bind(status)
                .bind((status == "refused").then_some("antifraud"))
                .bind((status == "refused").then_some("why"))
                .bind(sql_ms(now_ms - age))
                .execute(&db.pool)
                .await
                .expect("insert a reservation");
            }
            let terms: Vec<(Terms, u64)> = (0..12)
                .map(|n: u64| {
                    let terms = Terms {
                        account_id: format!("acc-{}", n % 4),
                        user_id: format!("user-{}", n % 6),
                        amount: Money::positive(i64::try_from(1 + n * 7).unwrap(), "USD").unwrap(),
                    };
                    (terms, now_ms + n % 3)
                })
                .collect();
            let reserves: Vec<(&Terms, u64)> = terms.iter().map(|(t, at)| (t, *at)).collect();

            let mut conn = db.pool.acquire().await.expect("a connection");
            let mut each = Vec::new();
            for (terms, at) in &reserves {
                each.push(screening.screen(&mut conn, terms, *at).await.unwrap());
            }
            let many = screening.screen_many(&mut conn, &reserves).await.unwrap();
            assert_eq!(many, each, "{:?}", test_db.backend);
            for reason in [RefusalReason::RateLimited, RefusalReason::LimitExceeded] {
                assert!(
                    each.iter()
                        .any(|v| v.as_ref().is_err_and(|r| r.reason == reason)),
                    "no {reason:?} among the verdicts: {each:?}"
                );
            }
            assert!(each.iter().any(Result::is_ok), "{each:?}");
        }
    }
}
