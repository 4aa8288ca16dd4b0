//! The screening hook: a participant's own rules for a new reserve (the balance store's
//! antifraud, limits and rate limit), run inside the reserve's database transaction so
//! that the counts it reads are those the decision is recorded against.
//!
//! Its verdict goes into `banktransfer_protocol::reservation::reserve` as the `screening`
//! argument; the book decides what a refusal means (a recorded REFUSED reservation).

use std::future::Future;

use banktransfer_protocol::reservation::{Refusal, Terms};

/// The verdicts of [`Screening::screen_many`], one per reserve, or the database's error.
pub type Verdicts = Result<Vec<Result<(), Refusal>>, sqlx::Error>;
use sqlx::AnyConnection;

/// Outer error: the database failed (the reserve fails, nothing is recorded). Inner
/// error: the rules refuse the reserve (recorded as REFUSED).
pub type Verdict = Result<Result<(), Refusal>, sqlx::Error>;

pub trait Screening: Send + Sync + 'static {
    /// Screens a reserve that has no reservation recorded yet. `conn` is the reserve's
    /// own transaction (on PostgreSQL the account row is already locked), so reads see
    /// every reservation committed before this one on the same account.
    fn screen(
        &self,
        conn: &mut AnyConnection,
        terms: &Terms,
        now_ms: u64,
    ) -> impl Future<Output = Verdict> + Send;

    /// Screens many reserves (`terms` and the time of each call) in one transaction,
    /// each as [`Screening::screen`] would: the caller guarantees that no write since
    /// the transaction's last statement touched a reservation of these users or
    /// accounts, so one read of the book answers all of them. Reads only the
    /// `reservations` table. The default screens one by one.
    fn screen_many(
        &self,
        conn: &mut AnyConnection,
        reserves: &[(&Terms, u64)],
    ) -> impl Future<Output = Verdicts> + Send {
        async move {
            let mut verdicts = Vec::with_capacity(reserves.len());
            for (terms, now_ms) in reserves {
                verdicts.push(self.screen(&mut *conn, terms, *now_ms).await?);
            }
            Ok(verdicts)
        }
    }
}

/// Accepts everything: the external institution's only rule is available funds, which
/// the book checks itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoScreening;

impl Screening for NoScreening {
    async fn screen(&self, _conn: &mut AnyConnection, _terms: &Terms, _now_ms: u64) -> Verdict {
        Ok(Ok(()))
    }
}
