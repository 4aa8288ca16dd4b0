//! What a participant's storage must do, as a trait: the gRPC handlers drive any
//! [`ReservationBook`], so the SQL store and the in-memory store (`testkit::memory_book`,
//! for deterministic simulation) answer through the very same handler code.
//!
//! Every method that changes state has it committed before its future resolves: the
//! caller may answer the client as soon as it has the outcome.

use std::future::Future;

use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::money::Money;
use banktransfer_protocol::reservation::{
    AccountView, Reservation, ReserveOutcome, SettleOutcome, Terms,
};

/// An account to open. The opening balance's currency is the account's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub account_id: String,
    pub user_id: String,
    /// Zero or more; applies only when the account is created.
    pub opening_balance: Money,
}

/// What opening an account did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The account did not exist and now does, with the opening balance.
    Opened(AccountView),
    /// The account already existed with the same owner and currency: returned unchanged
    /// (its balance is whatever it is now, not the requested opening balance).
    Existing(AccountView),
    /// The account id is taken by another owner or currency (ALREADY_EXISTS).
    Conflict(String),
}

/// A storage failure, whatever the storage is: the SQL store maps its driver's errors to
/// these at its boundary (`store/sql.rs`), and the handlers map these to gRPC statuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Could not reach the database, or it timed out: what it holds is unknown, and the
    /// caller may retry later.
    #[error("the reservation book's database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement (a bug, not an outage).
    #[error("the reservation book's database refused the statement: {0}")]
    Failed(String),
    /// A stored row the protocol types cannot represent: a bug or a hand edit.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A participant's reservation book in storage. `now_ms` (milliseconds since the Unix
/// epoch) is always a parameter: implementations never read a clock.
pub trait ReservationBook: Send + Sync + 'static {
    /// Decide and record a reserve: a new hold or refusal is committed; a replay or a
    /// conflict changes nothing.
    fn reserve(
        &self,
        transfer_id: &str,
        terms: Terms,
        now_ms: u64,
    ) -> impl Future<Output = Result<ReserveOutcome, StoreError>> + Send;

    /// Decide and record a confirm.
    fn confirm(
        &self,
        transfer_id: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<SettleOutcome, StoreError>> + Send;

    /// Decide and record a cancel (a tombstone when no reserve arrived yet).
    fn cancel(
        &self,
        transfer_id: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<SettleOutcome, StoreError>> + Send;

    fn get_reservation(
        &self,
        transfer_id: &str,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// Open an account, idempotently (see [`OpenOutcome`]).
    fn open_account(
        &self,
        account: NewAccount,
        now_ms: u64,
    ) -> impl Future<Output = Result<OpenOutcome, StoreError>> + Send;

    fn get_account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<AccountView>, StoreError>> + Send;

    /// Up to `limit` reservations of any status (tombstones included), in transfer id
    /// order, those after `after` (from the first when `None`): a page of the audit's
    /// ListReservations.
    fn list_reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Reservation>, StoreError>> + Send;

    /// Up to `limit` accounts in account id order, those after `after` (from the first
    /// when `None`), each read in one step with its opening balance and the totals of its
    /// held and confirmed reservations, so that they agree: a page of the audit's
    /// ListAccounts.
    fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AccountStatement>, StoreError>> + Send;
}
