//! [`MemoryBook`]: a participant's reservation book in memory, for the deterministic
//! simulation (sqlx's SQLite runs on OS threads, which a simulated clock and network
//! cannot order).
//!
//! It asks the same pure book (`banktransfer_protocol::reservation`) the same questions
//! the SQL store (`participant::store`) asks, with the same inputs, and applies each
//! answer atomically: one lock held from the read to the write stands for the SQL
//! store's transaction. What it adds is what a simulation needs from a database it owns:
//! - planned store failures ([`crate::sim_db`]): delays, transactions in flight, an
//!   unreachable database (the error the SQL store reports when its pool cannot reach
//!   the database, which the handlers answer UNAVAILABLE), replies lost after the commit.
//!   Reserve, confirm and cancel run detached from their caller, as the SQL store runs
//!   them;
//! - [`MemoryBook::snapshot`]: the state, read without failures, for invariant checks
//!   (with [`BookSnapshot::list_accounts`], the audit's view of its accounts);
//! - [`BookMutation`]: TEST-ONLY removal of one safety mechanism, so that the simulation
//!   can show it notices.
//!
//! Screening runs on the recorded reservations through [`MemoryScreening`], the in-memory
//! counterpart of `participant::Screening`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::reservation::{
    self, AccountView, Balance, Refusal, Reservation, ReservationStatus, ReserveOutcome,
    SettleOutcome, Side, Terms,
};
use participant::{NewAccount, NoScreening, OpenOutcome, ReservationBook, StoreError};

use crate::sim_db::{self, FailurePlanner, SimDatabase, StoreFailures};

/// A reservation as the book records it, with its row times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReservation {
    pub reservation: Reservation,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// The in-memory counterpart of `participant::Screening`: a participant's own rules for a new
/// reserve, over every reservation recorded so far (what the SQL screening counts).
pub trait MemoryScreening: Send + Sync + 'static {
    /// Screens a reserve that has no reservation recorded yet; runs under the book's
    /// lock, so the reservations it sees are exactly those the decision is recorded
    /// against.
    fn screen<'a>(
        &self,
        recorded: impl Iterator<Item = &'a StoredReservation>,
        terms: &Terms,
        now_ms: u64,
    ) -> Result<(), Refusal>;
}

impl MemoryScreening for NoScreening {
    fn screen<'a>(
        &self,
        _recorded: impl Iterator<Item = &'a StoredReservation>,
        _terms: &Terms,
        _now_ms: u64,
    ) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Which book call a failure plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookCall {
    Reserve,
    Confirm,
    Cancel,
    GetReservation,
    OpenAccount,
    GetAccount,
    ListReservations,
    ListAccounts,
}

/// TEST-ONLY: a safety mechanism the book leaves out, to show the simulation catches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BookMutation {
    #[default]
    None,
    /// A cancel for an unknown transfer answers CANCELLED but records no tombstone, so a
    /// reserve arriving after it places a hold nobody will release.
    ForgetTombstones,
}

/// Everything the book holds, for invariant checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookSnapshot {
    /// By account id.
    pub accounts: BTreeMap<String, AccountView>,
    /// By transfer id.
    pub reservations: BTreeMap<String, StoredReservation>,
    /// Each account's opening balance, by account id (the SQL store's `opening_minor`).
    pub opening_minor: BTreeMap<String, i64>,
}

impl BookSnapshot {
    /// Up to `limit` reservations in transfer id order, after `after`.
    fn list_reservations(&self, after: Option<&str>, limit: u32) -> Vec<Reservation> {
        self.reservations
            .range::<str, _>((after_bound(after), Bound::Unbounded))
            .take(page_len(limit))
            .map(|(_, stored)| stored.reservation.clone())
            .collect()
    }

    /// Up to `limit` accounts in account id order, after `after`, with their opening
    /// balances and reservation totals (in the account's currency, as the SQL store
    /// counts them).
    pub fn list_accounts(&self, after: Option<&str>, limit: u32) -> Vec<AccountStatement> {
        let totals = self.reservation_totals();
        self.accounts
            .range::<str, _>((after_bound(after), Bound::Unbounded))
            .take(page_len(limit))
            .map(|(account_id, account)| {
                let (held, confirmed) =
                    totals.get(account_id.as_str()).copied().unwrap_or_default();
                AccountStatement {
                    account_id: account_id.clone(),
                    user_id: account.user_id.clone(),
                    currency: account.currency,
                    balance: account.balance,
                    opening_minor: self.opening_minor.get(account_id).copied(),
                    reservations_held_minor: held,
                    reservations_confirmed_minor: confirmed,
                }
            })
            .collect()
    }

    /// (held, confirmed) totals of each account's reservations in its own currency, in
    /// one pass over the reservations.
    fn reservation_totals(&self) -> BTreeMap<&str, (i64, i64)> {
        let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for stored in self.reservations.values() {
            let Some(terms) = &stored.reservation.terms else {
                continue;
            };
            let in_its_currency = self
                .accounts
                .get(&terms.account_id)
                .is_some_and(|account| account.currency == terms.amount.currency());
            if !in_its_currency {
                continue;
            }
            let (held, confirmed) = totals.entry(terms.account_id.as_str()).or_default();
            let total = match stored.reservation.status {
                ReservationStatus::Held => held,
                ReservationStatus::Confirmed => confirmed,
                ReservationStatus::Cancelled | ReservationStatus::Refused(_) => continue,
            };
            *total = total
                .checked_add(terms.amount.minor_units())
                .expect("reservation totals fit in i64, as in the SQL store");
        }
        totals
    }
}

fn after_bound(after: Option<&str>) -> Bound<&str> {
    after.map_or(Bound::Unbounded, Bound::Excluded)
}

fn page_len(limit: u32) -> usize {
    usize::try_from(limit).expect("a page length fits in usize")
}

/// The database itself, shared by every handle: the book's tables, and the side and the
/// screening its decisions take.
struct Database<S> {
    side: Side,
    screening: S,
    tables: SimDatabase<BookSnapshot, BookMutation>,
}

/// A handle on one in-memory book: clones share it, as connections share a database, so
/// a simulated process that restarts opens the same (durable) book again.
pub struct MemoryBook<S = NoScreening> {
    db: Arc<Database<S>>,
    failures: StoreFailures<BookCall>,
}

impl<S> Clone for MemoryBook<S> {
    fn clone(&self) -> Self {
        MemoryBook {
            db: Arc::clone(&self.db),
            failures: self.failures.clone(),
        }
    }
}

impl<S: MemoryScreening> Database<S> {
    fn reserve(&self, transfer_id: &str, terms: Terms, now_ms: u64) -> ReserveOutcome {
        let mut tables = self.tables.lock();
        let existing = tables.reservations.get(transfer_id).cloned();
        let account = tables.accounts.get(&terms.account_id).cloned();
        let screening = match existing {
            // A recorded reservation is answered from the record: nothing to screen.
            Some(_) => Ok(()),
            None => self
                .screening
                .screen(tables.reservations.values(), &terms, now_ms),
        };
        let outcome = reservation::reserve(
            self.side,
            transfer_id,
            terms.clone(),
            existing.as_ref().map(|stored| &stored.reservation),
            account.as_ref(),
            screening,
        );
        if let ReserveOutcome::Record {
            reservation,
            balance,
        } = &outcome
        {
            if let Some(balance) = balance {
                tables
                    .accounts
                    .get_mut(&terms.account_id)
                    .expect("a hold is placed on an existing account")
                    .balance = *balance;
            }
            tables.reservations.insert(
                transfer_id.to_owned(),
                StoredReservation {
                    reservation: reservation.clone(),
                    created_at_ms: now_ms,
                    updated_at_ms: now_ms,
                },
            );
            self.tables.changed();
        }
        outcome
    }

    fn settle(
        &self,
        transfer_id: &str,
        now_ms: u64,
        decide: fn(Side, &str, Option<&Reservation>, Option<Balance>) -> SettleOutcome,
        is_cancel: bool,
    ) -> SettleOutcome {
        let mut tables = self.tables.lock();
        let existing = tables.reservations.get(transfer_id).cloned();
        let balance = existing
            .as_ref()
            .and_then(|stored| stored.reservation.terms.as_ref())
            .and_then(|terms| tables.accounts.get(&terms.account_id))
            .map(|account| account.balance);
        let outcome = decide(
            self.side,
            transfer_id,
            existing.as_ref().map(|stored| &stored.reservation),
            balance,
        );
        match &outcome {
            SettleOutcome::Apply {
                reservation,
                balance,
            } => {
                let terms = reservation
                    .terms
                    .as_ref()
                    .expect("a reservation that moves money has terms");
                tables
                    .accounts
                    .get_mut(&terms.account_id)
                    .expect("a held reservation's account exists")
                    .balance = *balance;
                let stored = tables
                    .reservations
                    .get_mut(transfer_id)
                    .expect("the reservation was just read");
                stored.reservation = reservation.clone();
                stored.updated_at_ms = now_ms;
                self.tables.changed();
            }
            SettleOutcome::Record(tombstone) => {
                let forget = is_cancel && self.tables.mutation() == BookMutation::ForgetTombstones;
                if !forget {
                    tables.reservations.insert(
                        transfer_id.to_owned(),
                        StoredReservation {
                            reservation: tombstone.clone(),
                            created_at_ms: now_ms,
                            updated_at_ms: now_ms,
                        },
                    );
                    self.tables.changed();
                }
            }
            SettleOutcome::Replay(_) | SettleOutcome::Reject(_) => {}
        }
        outcome
    }

    fn open_account(&self, account: &NewAccount) -> OpenOutcome {
        let mut tables = self.tables.lock();
        let currency = account.opening_balance.currency();
        match tables.accounts.get(&account.account_id) {
            None => {
                let view = AccountView {
                    account_id: account.account_id.clone(),
                    user_id: account.user_id.clone(),
                    currency,
                    balance: Balance::opening(account.opening_balance.minor_units()),
                };
                tables
                    .accounts
                    .insert(account.account_id.clone(), view.clone());
                tables.opening_minor.insert(
                    account.account_id.clone(),
                    account.opening_balance.minor_units(),
                );
                self.tables.changed();
                OpenOutcome::Opened(view)
            }
            Some(stored) if stored.user_id == account.user_id && stored.currency == currency => {
                OpenOutcome::Existing(stored.clone())
            }
            // The same words as the SQL book's.
            Some(stored) => OpenOutcome::Conflict(format!(
                "account {} already exists for another user or in another currency; choose \
                 another account_id",
                stored.account_id
            )),
        }
    }
}

impl<S: MemoryScreening> MemoryBook<S> {
    pub fn new(side: Side, screening: S) -> MemoryBook<S> {
        MemoryBook {
            db: Arc::new(Database {
                side,
                screening,
                tables: SimDatabase::new(BookSnapshot::default(), BookMutation::None),
            }),
            failures: StoreFailures::default(),
        }
    }

    /// Every call's delays and failures are planned by `planner`.
    pub fn with_failures(mut self, planner: FailurePlanner<BookCall>) -> MemoryBook<S> {
        self.failures = StoreFailures::planned(planner);
        self
    }

    /// TEST-ONLY: see [`BookMutation`]. Before any clone.
    pub fn with_mutation(mut self, mutation: BookMutation) -> MemoryBook<S> {
        sim_db::before_sharing(&mut self.db)
            .tables
            .set_mutation(mutation);
        self
    }

    pub fn side(&self) -> Side {
        self.db.side
    }

    /// The whole state, as committed; never planned, never failed.
    pub fn snapshot(&self) -> BookSnapshot {
        self.db.tables.lock().clone()
    }

    /// Reads the state in place (invariant checks without a copy).
    pub fn inspect<T>(&self, read: impl FnOnce(&BookSnapshot) -> T) -> T {
        read(&self.db.tables.lock())
    }

    /// How many changes were applied so far: equal versions, equal states.
    pub fn version(&self) -> u64 {
        self.db.tables.version()
    }

    /// Runs `transaction` as `call` is planned: delayed, in flight, failed, or its reply
    /// lost. Reserve, confirm and cancel run detached from their caller, as the SQL
    /// store runs them: a caller that stops waiting does not stop them.
    async fn execute<T: Send + 'static>(
        &self,
        call: BookCall,
        transaction: impl FnOnce(&Database<S>) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let plan = self.failures.plan(call);
        let planned = sim_db::run_planned(
            Arc::clone(&self.db),
            plan,
            move |db| Ok(transaction(db)),
            unreachable,
        );
        match call {
            BookCall::Reserve | BookCall::Confirm | BookCall::Cancel => {
                sim_db::joined(tokio::spawn(planned).await, unreachable)?
            }
            BookCall::GetReservation
            | BookCall::OpenAccount
            | BookCall::GetAccount
            | BookCall::ListReservations
            | BookCall::ListAccounts => planned.await,
        }
    }
}

impl<S: MemoryScreening> ReservationBook for MemoryBook<S> {
    async fn reserve(
        &self,
        transfer_id: &str,
        terms: Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.execute(BookCall::Reserve, move |db| {
            db.reserve(&transfer_id, terms, now_ms)
        })
        .await
    }

    async fn confirm(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.execute(BookCall::Confirm, move |db| {
            db.settle(&transfer_id, now_ms, reservation::confirm, false)
        })
        .await
    }

    async fn cancel(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.execute(BookCall::Cancel, move |db| {
            db.settle(&transfer_id, now_ms, reservation::cancel, true)
        })
        .await
    }

    async fn get_reservation(&self, transfer_id: &str) -> Result<Option<Reservation>, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.execute(BookCall::GetReservation, move |db| {
            db.tables
                .lock()
                .reservations
                .get(&transfer_id)
                .map(|stored| stored.reservation.clone())
        })
        .await
    }

    async fn open_account(
        &self,
        account: NewAccount,
        _now_ms: u64,
    ) -> Result<OpenOutcome, StoreError> {
        self.execute(BookCall::OpenAccount, move |db| db.open_account(&account))
            .await
    }

    async fn get_account(&self, account_id: &str) -> Result<Option<AccountView>, StoreError> {
        let account_id = account_id.to_owned();
        self.execute(BookCall::GetAccount, move |db| {
            db.tables.lock().accounts.get(&account_id).cloned()
        })
        .await
    }

    async fn list_reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Reservation>, StoreError> {
        let after = after.map(str::to_owned);
        self.execute(BookCall::ListReservations, move |db| {
            db.tables.lock().list_reservations(after.as_deref(), limit)
        })
        .await
    }

    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountStatement>, StoreError> {
        let after = after.map(str::to_owned);
        self.execute(BookCall::ListAccounts, move |db| {
            db.tables.lock().list_accounts(after.as_deref(), limit)
        })
        .await
    }
}

/// What the SQL store reports when its pool cannot reach the database.
fn unreachable() -> StoreError {
    StoreError::Unavailable("pool timed out while waiting for an open connection".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use banktransfer_protocol::money::Money;
    use banktransfer_protocol::reservation::{RefusalReason, ReservationStatus};

    use super::*;
    use crate::sim_db::{Failure, FailurePlan};

    fn usd(minor_units: i64) -> Money {
        Money::positive(minor_units, "USD").unwrap()
    }

    fn terms(amount_minor: i64) -> Terms {
        Terms {
            account_id: "acc".into(),
            user_id: "alice".into(),
            amount: usd(amount_minor),
        }
    }

    async fn book(mutation: BookMutation) -> MemoryBook {
        let book = MemoryBook::new(Side::Debit, NoScreening).with_mutation(mutation);
        let opened = book
            .open_account(
                NewAccount {
                    account_id: "acc".into(),
                    user_id: "alice".into(),
                    opening_balance: Money::non_negative(100, "USD").unwrap(),
                },
                0,
            )
            .await
            .unwrap();
        assert!(matches!(opened, OpenOutcome::Opened(_)));
        book
    }

    fn balance(book: &MemoryBook) -> Balance {
        book.snapshot().accounts["acc"].balance
    }

    #[tokio::test]
    async fn holds_confirm_and_replay_like_the_sql_store() {
        let book = book(BookMutation::None).await;
        let held = book.reserve("t1", terms(40), 1).await.unwrap();
        assert!(matches!(held, ReserveOutcome::Record { .. }));
        assert_eq!(balance(&book).reserved_minor, 40);
        assert!(matches!(
            book.reserve("t1", terms(40), 2).await.unwrap(),
            ReserveOutcome::Replay(_)
        ));
        assert!(matches!(
            book.reserve("t1", terms(41), 2).await.unwrap(),
            ReserveOutcome::Conflict(_)
        ));
        assert!(matches!(
            book.confirm("t1", 3).await.unwrap(),
            SettleOutcome::Apply { .. }
        ));
        assert!(matches!(
            book.cancel("t1", 4).await.unwrap(),
            SettleOutcome::Reject(_)
        ));
        assert_eq!(
            balance(&book),
            Balance {
                available_minor: 60,
                reserved_minor: 0,
                confirmed_minor: 40
            }
        );
        let refused = book.reserve("t2", terms(61), 5).await.unwrap();
        let ReserveOutcome::Record { reservation, .. } = refused else {
            panic!("{refused:?}")
        };
        assert!(matches!(
            reservation.status,
            ReservationStatus::Refused(Refusal {
                reason: RefusalReason::InsufficientFunds,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn listings_page_in_key_order_like_the_sql_store() {
        let book = book(BookMutation::None).await;
        book.reserve("t2", terms(40), 1).await.unwrap();
        book.confirm("t2", 2).await.unwrap();
        book.reserve("t3", terms(10), 3).await.unwrap();
        book.cancel("t1", 4).await.unwrap();
        let first = book.list_reservations(None, 2).await.unwrap();
        let ids: Vec<&str> = first.iter().map(|r| r.transfer_id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(first[0].terms, None, "the tombstone is listed too");
        let rest = book.list_reservations(Some("t2"), 2).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].transfer_id, "t3");

        let accounts = book.list_accounts(None, 10).await.unwrap();
        assert_eq!(accounts.len(), 1);
        let statement = &accounts[0];
        assert_eq!(statement.opening_minor, Some(100));
        assert_eq!(
            (
                statement.reservations_held_minor,
                statement.reservations_confirmed_minor
            ),
            (10, 40)
        );
        assert_eq!(statement.balance, balance(&book));
        assert!(
            book.list_accounts(Some("acc"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_cancel_first_leaves_a_tombstone_unless_mutated() {
        let book = book(BookMutation::None).await;
        assert!(matches!(
            book.cancel("t1", 1).await.unwrap(),
            SettleOutcome::Record(_)
        ));
        let late = book.reserve("t1", terms(10), 2).await.unwrap();
        assert!(matches!(late, ReserveOutcome::Replay(ref r) if r.terms.is_none()));
        assert_eq!(balance(&book).reserved_minor, 0);

        let forgetful = self::book(BookMutation::ForgetTombstones).await;
        forgetful.cancel("t1", 1).await.unwrap();
        let late = forgetful.reserve("t1", terms(10), 2).await.unwrap();
        assert!(matches!(late, ReserveOutcome::Record { .. }));
        assert_eq!(balance(&forgetful).reserved_minor, 10);
    }

    #[tokio::test]
    async fn money_moves_even_when_the_caller_gives_up() {
        let plan = Arc::new(Mutex::new(FailurePlan {
            delay: Duration::from_millis(30),
            ..FailurePlan::default()
        }));
        let planned = Arc::clone(&plan);
        let book = book(BookMutation::None)
            .await
            .with_failures(Arc::new(move |_| *planned.lock().unwrap()));
        let gave_up =
            tokio::time::timeout(Duration::from_millis(5), book.reserve("t1", terms(10), 1)).await;
        assert!(gave_up.is_err());
        // Lands on its own, however slow this machine is (bounded).
        for _ in 0..500 {
            if balance(&book).reserved_minor != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            balance(&book).reserved_minor,
            10,
            "the reserve ran detached"
        );
    }

    #[tokio::test]
    async fn planned_failures_fail_before_or_after_applying() {
        let plan = Arc::new(Mutex::new(FailurePlan::default()));
        let planned = Arc::clone(&plan);
        let book = book(BookMutation::None)
            .await
            .with_failures(Arc::new(move |_| *planned.lock().unwrap()));
        plan.lock().unwrap().failure = Failure::Unreachable;
        let err = book.reserve("t1", terms(10), 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(book.snapshot().reservations.is_empty());

        plan.lock().unwrap().failure = Failure::LostReply;
        let err = book.reserve("t1", terms(10), 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert_eq!(
            book.snapshot().reservations["t1"].reservation.status,
            ReservationStatus::Held
        );
    }
}
