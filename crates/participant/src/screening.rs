//! The screening hook: a participant's own rules for a new reserve (the balance store's
//! antifraud, limits and rate limit), run inside the reserve's database transaction so
//! that the counts it reads are those the decision is recorded against.
//!
//! Its verdict goes into `banktransfer_protocol::reservation::reserve` as the `screening`
//! argument; the book decides what a refusal means (a recorded REFUSED reservation).

use std::future::Future;

use banktransfer_protocol::reservation::{Refusal, Terms};
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
