//! [`ReservationStore`]: the reservation book over SQL. Each reserve, confirm and cancel
//! is one database transaction: read what is recorded (locking the rows it may change on
//! PostgreSQL), ask the pure book in `banktransfer_protocol::reservation` what to do,
//! write that, commit, and only then return the outcome.
//!
//! Lock order, the same in every operation so that two transactions never wait on each
//! other in a cycle: the reservation row first, then the account row.

mod sql;

pub use sql::sql_ms;

use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::reservation::{
    self, AccountView, Balance, Reservation, ReserveOutcome, SettleOutcome, Side, Terms,
};
use service_kit::db::{Backend, Db};
use tracing::Instrument;

use crate::book::{NewAccount, OpenOutcome, ReservationBook, StoreError};
use crate::screening::{NoScreening, Screening};
use sql::{Lock, SqlError};

/// A concurrent first call for the same transfer id fails our insert with a unique
/// violation; one re-read then finds its row and replays it. A second violation in a row
/// cannot come from the same cause, so it is an error rather than a reason to loop.
const DUPLICATE_RETRIES_MAX: u32 = 1;

/// The book's decision for a confirm or a cancel.
type SettleDecision = fn(Side, &str, Option<&Reservation>, Option<Balance>) -> SettleOutcome;

#[derive(Clone, Debug)]
pub struct ReservationStore<S = NoScreening> {
    db: Db,
    side: Side,
    screening: S,
}

impl<S: Screening> ReservationStore<S> {
    /// `db` must be migrated with [`crate::MIGRATIONS`].
    pub fn new(db: Db, side: Side, screening: S) -> ReservationStore<S> {
        ReservationStore {
            db,
            side,
            screening,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn side(&self) -> Side {
        self.side
    }

    fn lock(&self) -> Lock {
        match self.db.backend {
            Backend::Postgres => Lock::ForUpdate,
            // One connection per process: transactions are serialized already.
            Backend::Sqlite => Lock::None,
        }
    }

    async fn try_reserve(
        &self,
        transfer_id: &str,
        terms: &Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, SqlError> {
        let mut tx = self.db.pool.begin().await?;
        let existing = sql::select_reservation(&mut tx, transfer_id, self.lock()).await?;
        // Locked before screening, so the screening's counts cannot change under it for
        // this account until we commit.
        let account = sql::select_account(&mut tx, &terms.account_id, self.lock()).await?;
        let screening = match existing {
            // A recorded reservation is answered from the record: nothing to screen.
            Some(_) => Ok(()),
            None => self.screening.screen(&mut tx, terms, now_ms).await?,
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
            sql::insert_reservation(&mut tx, reservation, now_ms).await?;
            if let Some(balance) = balance {
                sql::update_balance(&mut tx, &terms.account_id, *balance).await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn try_settle(
        &self,
        transfer_id: &str,
        now_ms: u64,
        decide: SettleDecision,
    ) -> Result<SettleOutcome, SqlError> {
        let mut tx = self.db.pool.begin().await?;
        let existing = sql::select_reservation(&mut tx, transfer_id, self.lock()).await?;
        let balance = match existing.as_ref().and_then(|r| r.terms.as_ref()) {
            Some(terms) => sql::select_account(&mut tx, &terms.account_id, self.lock())
                .await?
                .map(|account| account.balance),
            None => None,
        };
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
                sql::update_reservation_status(&mut tx, reservation, now_ms).await?;
                sql::update_balance(&mut tx, &terms.account_id, *balance).await?;
            }
            SettleOutcome::Record(tombstone) => {
                sql::insert_reservation(&mut tx, tombstone, now_ms).await?;
            }
            SettleOutcome::Replay(_) | SettleOutcome::Reject(_) => {}
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

impl<S: Screening + Clone> ReservationStore<S> {
    /// Runs one money-moving operation to completion on a task of its own. A request
    /// whose deadline passes is dropped by the server mid-await; dropped inside a
    /// transaction, sqlx can hand the connection back with its transaction state out of
    /// step with the server's (PostgreSQL then warns "there is already a transaction in
    /// progress", and a later request could commit inside the abandoned one). Detached,
    /// the operation commits or rolls back whole; to the caller a late commit is a
    /// lost reply, which the protocol is built for.
    async fn detached<T, F>(
        &self,
        operation: impl FnOnce(ReservationStore<S>) -> F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = tokio::spawn(operation(self.clone()).in_current_span());
        task.await.unwrap_or_else(|join_error| {
            // A panic in the operation is a bug (an assertion on money): surface it.
            std::panic::resume_unwind(join_error.into_panic())
        })
    }
}

impl<S: Screening + Clone> ReservationBook for ReservationStore<S> {
    async fn reserve(
        &self,
        transfer_id: &str,
        terms: Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.detached(move |store| async move {
            let mut retries = 0;
            loop {
                match store.try_reserve(&transfer_id, &terms, now_ms).await {
                    Err(SqlError::UniqueViolation(_)) if retries < DUPLICATE_RETRIES_MAX => {
                        retries += 1;
                        tracing::info!("concurrent reserve recorded first: replaying it");
                    }
                    result => return result.map_err(StoreError::from),
                }
            }
        })
        .await
    }

    async fn confirm(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        // Confirm never inserts, so it cannot meet a duplicate.
        self.detached(move |store| async move {
            store
                .try_settle(&transfer_id, now_ms, reservation::confirm)
                .await
                .map_err(StoreError::from)
        })
        .await
    }

    async fn cancel(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.detached(move |store| async move {
            let mut retries = 0;
            loop {
                match store
                    .try_settle(&transfer_id, now_ms, reservation::cancel)
                    .await
                {
                    // A reserve (or another cancel) recorded this transfer id first.
                    Err(SqlError::UniqueViolation(_)) if retries < DUPLICATE_RETRIES_MAX => {
                        retries += 1;
                        tracing::info!("concurrent call recorded the transfer first: re-reading");
                    }
                    result => return result.map_err(StoreError::from),
                }
            }
        })
        .await
    }

    async fn get_reservation(&self, transfer_id: &str) -> Result<Option<Reservation>, StoreError> {
        let mut conn = self.db.pool.acquire().await.map_err(sql::store_error)?;
        Ok(sql::select_reservation(&mut conn, transfer_id, Lock::None).await?)
    }

    async fn open_account(
        &self,
        account: NewAccount,
        now_ms: u64,
    ) -> Result<OpenOutcome, StoreError> {
        let mut conn = self.db.pool.acquire().await.map_err(sql::store_error)?;
        let created = sql::insert_account_if_absent(&mut conn, &account, now_ms).await?;
        let stored = sql::select_account(&mut conn, &account.account_id, Lock::None)
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
        let mut conn = self.db.pool.acquire().await.map_err(sql::store_error)?;
        Ok(sql::select_account(&mut conn, account_id, Lock::None).await?)
    }

    async fn list_reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Reservation>, StoreError> {
        let mut conn = self.db.pool.acquire().await.map_err(sql::store_error)?;
        Ok(sql::list_reservations(&mut conn, after.unwrap_or_default(), limit).await?)
    }

    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountStatement>, StoreError> {
        let mut conn = self.db.pool.acquire().await.map_err(sql::store_error)?;
        Ok(sql::list_accounts(&mut conn, after.unwrap_or_default(), limit).await?)
    }
}
