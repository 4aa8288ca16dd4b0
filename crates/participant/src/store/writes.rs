//! The book's writes as group-commit jobs: a reserve, confirm or cancel queued for the
//! next shared transaction (`service_kit::group_commit`), with the same statements and
//! the same decision as when it runs alone.

use banktransfer_protocol::reservation::{ReserveOutcome, SettleOutcome, Terms};
use service_kit::group_commit::{BoxFuture, Job};
use sqlx::AnyConnection;

use super::SqlBook;
use crate::book::StoreError;
use crate::screening::Screening;

/// One write to the book.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Reserve {
        transfer_id: String,
        terms: Terms,
        now_ms: u64,
    },
    Confirm {
        transfer_id: String,
        now_ms: u64,
    },
    Cancel {
        transfer_id: String,
        now_ms: u64,
    },
}

/// What a write decided (and, once its batch committed, recorded).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Reserve(ReserveOutcome),
    Settle(SettleOutcome),
}

pub(crate) struct BookWrite<S> {
    pub book: SqlBook<S>,
    pub op: Op,
}

impl<S: Screening + Clone> Job for BookWrite<S> {
    type Output = Written;
    type Error = StoreError;

    /// The whole batch with a few multi-row statements (`store::batch`). Every job of a
    /// batch belongs to the same store.
    fn run_many<'c>(
        jobs: &'c [&'c Self],
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Vec<Written>, StoreError>> {
        Box::pin(async move {
            let Some(first) = jobs.first() else {
                return Ok(Vec::new());
            };
            let ops: Vec<&Op> = jobs.iter().map(|job| &job.op).collect();
            first
                .book
                .write_many(conn, &ops)
                .await
                .map_err(StoreError::from)
        })
    }

    fn run_alone<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Written, StoreError>> {
        Box::pin(self.book.write_alone(conn, &self.op))
    }

    fn unavailable(detail: String) -> StoreError {
        StoreError::Unavailable(detail)
    }
}
