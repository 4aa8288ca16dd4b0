//! [`ReservationStore`]: the reservation book over SQL. Each reserve, confirm and cancel
//! is one database transaction: read what is recorded (locking the rows it may change on
//! PostgreSQL), ask the pure book in `banktransfer_protocol::reservation` what to do,
//! write that, commit, and only then return the outcome. Concurrent reserves, confirms
//! and cancels share transactions ([`writes`], through `service_kit::group_commit`):
//! each gets the same decision as alone, and is answered only after the shared commit. A
//! shared transaction reads and writes its operations with a few multi-row statements
//! ([`batch`]); alone, an operation runs its own statements (`write_in`), which is also
//! the reference the batched path is tested against.
//!
//! Lock order, the same in every operation so that two transactions never wait on each
//! other in a cycle: the reservation row first, then the account row.

mod batch;
mod sql;
mod writes;

pub use sql::sql_ms;

use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::reservation::{
    self, AccountView, Balance, Reservation, ReserveOutcome, SettleOutcome, Side, Terms,
};
use service_kit::db::Db;
use service_kit::group_commit::{GroupCommit, GroupCommitSettings};
use service_kit::metrics::StoreTimer;

use crate::book::{NewAccount, OpenOutcome, ReservationBook, StoreError};
use crate::screening::{NoScreening, Screening};
use sql::{SqlError, lone};
use sqlx::AnyConnection;
use writes::{BookWrite, Written};

/// A concurrent first call for the same transfer id fails our insert with a unique
/// violation; one re-read then finds its row and replays it. A second violation in a row
/// cannot come from the same cause, so it is an error rather than a reason to loop.
const DUPLICATE_RETRIES_MAX: u32 = 1;

/// The book's decision for a confirm or a cancel.
type SettleDecision = fn(Side, &str, Option<&Reservation>, Option<Balance>) -> SettleOutcome;

#[derive(Clone, Debug)]
pub struct ReservationStore<S: Screening + Clone = NoScreening> {
    book: SqlBook<S>,
    writes: GroupCommit<BookWrite<S>>,
}

/// What one operation needs: the database, which side of a transfer this book is, and
/// the screening of new reserves. Shared by the store and each queued write.
#[derive(Clone, Debug)]
pub(crate) struct SqlBook<S> {
    db: Db,
    side: Side,
    screening: S,
}

impl<S: Screening + Clone> ReservationStore<S> {
    /// `db` must be migrated with [`crate::MIGRATIONS`]. Starts the group-commit workers,
    /// so it must be called inside a Tokio runtime.
    pub fn new(db: Db, side: Side, screening: S) -> ReservationStore<S> {
        let settings = GroupCommitSettings::default();
        let book = SqlBook {
            db: db.clone(),
            side,
            screening,
        };
        ReservationStore {
            writes: GroupCommit::start(db, settings),
            book,
        }
    }

    pub fn db(&self) -> &Db {
        &self.book.db
    }

    pub fn side(&self) -> Side {
        self.book.side
    }

    /// A confirm or a cancel, through the group commit.
    async fn settle(&self, op: writes::Op) -> Result<SettleOutcome, StoreError> {
        match self.write(op).await? {
            Written::Settle(outcome) => Ok(outcome),
            Written::Reserve(_) => {
                unreachable!("a confirm or cancel answers with a settle outcome")
            }
        }
    }

    async fn write(&self, op: writes::Op) -> Result<Written, StoreError> {
        self.writes
            .submit(BookWrite {
                book: self.book.clone(),
                op,
            })
            .await
    }
}

impl<S: Screening> SqlBook<S> {
    /// Reserves inside the caller's transaction (its own: a batch runs `store::batch`).
    async fn reserve_in(
        &self,
        conn: &mut AnyConnection,
        transfer_id: &str,
        terms: &Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, SqlError> {
        // The account is locked before screening, so the screening's counts cannot
        // change under it for this account until we commit.
        let (existing, account) =
            lone::select_for_reserve(conn, self.db.backend, transfer_id, &terms.account_id).await?;
        let screening = match existing {
            // A recorded reservation is answered from the record: nothing to screen.
            Some(_) => Ok(()),
            None => self.screening.screen(conn, terms, now_ms).await?,
        };
        let outcome = reservation::reserve(
            self.side,
            transfer_id,
            terms.clone(),
            existing.as_ref(),
            account.as_ref(),
            screening,
        );
        if let ReserveOutcome::Record {
            reservation,
            balance,
        } = &outcome
        {
            lone::record(conn, self.db.backend, reservation, *balance, now_ms).await?;
        }
        Ok(outcome)
    }

    /// Confirms or cancels inside the caller's transaction.
    async fn settle_in(
        &self,
        conn: &mut AnyConnection,
        transfer_id: &str,
        now_ms: u64,
        decide: SettleDecision,
    ) -> Result<SettleOutcome, SqlError> {
        let (existing, account) =
            lone::select_for_settle(conn, self.db.backend, transfer_id).await?;
        let balance = account.map(|account| account.balance);
        let outcome = decide(self.side, transfer_id, existing.as_ref(), balance);
        match &outcome {
            SettleOutcome::Apply {
                reservation,
                balance,
            } => {
                let terms = reservation
                    .terms
                    .as_ref()
                    .expect("a reservation that moves money has terms");
                lone::apply(
                    conn,
                    self.db.backend,
                    reservation,
                    &terms.account_id,
                    *balance,
                    now_ms,
                )
                .await?;
            }
            SettleOutcome::Record(tombstone) => {
                sql::insert_reservation(conn, tombstone, now_ms).await?;
            }
            SettleOutcome::Replay(_) | SettleOutcome::Reject(_) => {}
        }
        Ok(outcome)
    }

    /// `op` in a transaction of its own. A unique violation means a concurrent call
    /// recorded the same transfer id first (possible on PostgreSQL, where transactions
    /// run side by side): one re-read then finds its row and replays it.
    async fn write_alone(
        &self,
        conn: &mut AnyConnection,
        op: &writes::Op,
    ) -> Result<Written, StoreError> {
        use sqlx::Connection;
        let mut retries = 0;
        loop {
            let attempt = async {
                let mut tx = conn.begin().await?;
                let written = self.write_in(&mut tx, op).await?;
                tx.commit().await?;
                Ok::<_, SqlError>(written)
            };
            match attempt.await {
                Err(SqlError::UniqueViolation(_)) if retries < DUPLICATE_RETRIES_MAX => {
                    retries += 1;
                    tracing::info!("a concurrent call recorded the transfer first: re-reading");
                }
                result => return result.map_err(StoreError::from),
            }
        }
    }

    async fn write_in(
        &self,
        conn: &mut AnyConnection,
        op: &writes::Op,
    ) -> Result<Written, SqlError> {
        Ok(match op {
            writes::Op::Reserve {
                transfer_id,
                terms,
                now_ms,
            } => Written::Reserve(self.reserve_in(conn, transfer_id, terms, *now_ms).await?),
            writes::Op::Confirm {
                transfer_id,
                now_ms,
            } => Written::Settle(
                self.settle_in(conn, transfer_id, *now_ms, reservation::confirm)
                    .await?,
            ),
            writes::Op::Cancel {
                transfer_id,
                now_ms,
            } => Written::Settle(
                self.settle_in(conn, transfer_id, *now_ms, reservation::cancel)
                    .await?,
            ),
        })
    }
}

/// Each operation is timed as a whole (`banktransfer_store_duration_seconds`), waiting for
/// its group commit included: what its caller waits.
impl<S: Screening + Clone> ReservationBook for ReservationStore<S> {
    async fn reserve(
        &self,
        transfer_id: &str,
        terms: Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        let _timer = StoreTimer::start("reserve");
        let op = writes::Op::Reserve {
            transfer_id: transfer_id.to_owned(),
            terms,
            now_ms,
        };
        match self.write(op).await? {
            Written::Reserve(outcome) => Ok(outcome),
            Written::Settle(_) => unreachable!("a reserve answers with a reserve outcome"),
        }
    }

    async fn confirm(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let _timer = StoreTimer::start("confirm");
        let op = writes::Op::Confirm {
            transfer_id: transfer_id.to_owned(),
            now_ms,
        };
        self.settle(op).await
    }

    async fn cancel(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let _timer = StoreTimer::start("cancel");
        let op = writes::Op::Cancel {
            transfer_id: transfer_id.to_owned(),
            now_ms,
        };
        self.settle(op).await
    }

    async fn get_reservation(&self, transfer_id: &str) -> Result<Option<Reservation>, StoreError> {
        let mut conn = self
            .book
            .db
            .pool
            .acquire()
            .await
            .map_err(sql::store_error)?;
        Ok(sql::select_reservation(&mut conn, transfer_id).await?)
    }

    async fn open_account(
        &self,
        account: NewAccount,
        now_ms: u64,
    ) -> Result<OpenOutcome, StoreError> {
        let mut conn = self
            .book
            .db
            .pool
            .acquire()
            .await
            .map_err(sql::store_error)?;
        let created = sql::insert_account_if_absent(&mut conn, &account, now_ms).await?;
        let stored = sql::select_account(&mut conn, &account.account_id)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "account {} missing right after it was opened",
                    account.account_id
                ))
            })?;
        if created {
            return Ok(OpenOutcome::Opened(stored));
        }
        let currency = account.opening_balance.currency();
        if stored.user_id == account.user_id && stored.currency == currency {
            Ok(OpenOutcome::Existing(stored))
        } else {
            // Whose it is and in what currency are not the caller's to read.
            Ok(OpenOutcome::Conflict(format!(
                "account {} already exists for another user or in another currency; choose \
                 another account_id",
                stored.account_id
            )))
        }
    }

    async fn get_account(&self, account_id: &str) -> Result<Option<AccountView>, StoreError> {
        let mut conn = self
            .book
            .db
            .pool
            .acquire()
            .await
            .map_err(sql::store_error)?;
        Ok(sql::select_account(&mut conn, account_id).await?)
    }

    async fn list_reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Reservation>, StoreError> {
        let mut conn = self
            .book
            .db
            .pool
            .acquire()
            .await
            .map_err(sql::store_error)?;
        Ok(sql::list_reservations(&mut conn, after.unwrap_or_default(), limit).await?)
    }

    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountStatement>, StoreError> {
        let mut conn = self
            .book
            .db
            .pool
            .acquire()
            .await
            .map_err(sql::store_error)?;
        Ok(sql::list_accounts(&mut conn, after.unwrap_or_default(), limit).await?)
    }
}
