//! The coordinator's durable transfer log: what the gateway and the reconciler share.
//!
//! Every write is a single statement guarded by the state it expects (a compare-and-set),
//! so the gateway and any number of reconciler replicas can race on one transfer and
//! still agree: the first decision recorded wins and everyone reads it back. The SQL lives
//! in [`sql`] alone; `testkit::memory_transfer_store` is the same log in memory, with the
//! same guards, for the deterministic simulation.

mod sql;

use std::future::Future;

use banktransfer_protocol::audit::LoggedTransfer;
use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Decision, RecordedState};
use service_kit::db::Migrations;

pub use sql::SqlTransferStore;

/// The transfer log's schema, one migration list per back end.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (
            "transfers",
            include_str!("../../migrations/sqlite/0001_transfers.sql"),
        ),
        (
            "trace context",
            include_str!("../../migrations/sqlite/0002_trace_context.sql"),
        ),
    ],
    postgres: &[
        (
            "transfers",
            include_str!("../../migrations/postgres/0001_transfers.sql"),
        ),
        (
            "trace context",
            include_str!("../../migrations/postgres/0002_trace_context.sql"),
        ),
    ],
};

/// A transfer intent, as the gateway records it before calling anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTransfer {
    /// A fresh UUID v7: the idempotency key towards the participants.
    pub transfer_id: String,
    pub user_id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    pub amount: Money,
    pub created_at_ms: u64,
    /// When the reconciler should first look at it: once its live driver's budget is
    /// spent.
    pub next_attempt_at_ms: u64,
    /// The W3C `traceparent` of the request's span, when traces are on: later work on
    /// the transfer (the reconciler's) links to it.
    pub trace_context: Option<String>,
}

/// One row of the transfer log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    pub transfer_id: String,
    pub user_id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    pub amount: Money,
    pub state: RecordedState,
    /// Set with an abort.
    pub failure_reason: Option<String>,
    pub created_at_ms: u64,
    pub decided_at_ms: Option<u64>,
    pub updated_at_ms: u64,
    /// Reconciler attempts that left the transfer unfinished.
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<u64>,
    /// As [`NewTransfer::trace_context`].
    pub trace_context: Option<String>,
}

impl TransferRecord {
    /// The row with `outcome`, before the write that records it has landed: what a
    /// client is told once the outcome is certain. `updated_at_ms` stays the time of the
    /// last write that did land, so that it never moves backwards from one read to the
    /// next.
    pub fn with_outcome(mut self, outcome: RecordedState) -> TransferRecord {
        assert!(outcome.is_final(), "{outcome:?} is not an outcome");
        self.state = outcome;
        self
    }

    /// What the audit's books rule matches a participant's reservation against.
    pub fn logged(&self) -> LoggedTransfer {
        LoggedTransfer {
            transfer_id: self.transfer_id.clone(),
            external_account_id: self.external_account_id.clone(),
            internal_account_id: self.internal_account_id.clone(),
            amount: self.amount,
        }
    }
}

/// What recording an intent found under its (user_id, idempotency_key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Ours: this request is the one that created it.
    Created(TransferRecord),
    /// An earlier request under the same key holds it (the fingerprint may differ).
    Existing(TransferRecord),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Could not reach the database, or it stayed busy: what the record holds is unknown.
    #[error("the transfer store is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement (a bug, not an outage).
    #[error("the transfer store refused the statement: {0}")]
    Failed(String),
    /// A row the store cannot make sense of, or one missing that must exist.
    #[error("the transfer store holds an invalid record: {0}")]
    Corrupt(String),
}

/// Runs one store call with a deadline (absolute, epoch ms). The gateway's answers are
/// promised within the client's budget, and a database that hangs must not break that
/// promise: past the deadline the call counts as `Unavailable` (what it wrote, if
/// anything, is unknown; the reconciler or a retry of the request finds out, exactly as
/// after a crash).
pub async fn within_deadline<T>(
    deadline_ms: u64,
    now_ms: u64,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let remaining_ms = deadline_ms.saturating_sub(now_ms).max(1);
    tokio::time::timeout(std::time::Duration::from_millis(remaining_ms), call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer from the transfer store within {remaining_ms} ms"
            )))
        })
}

/// The coordinator's transfer log. Each method is one guarded statement (plus a re-read
/// where the caller needs to see what won).
pub trait TransferStore: Send + Sync + 'static {
    /// Records the intent in state `started` unless the (user_id, idempotency_key) is
    /// taken, then returns whichever row holds the key. Concurrent duplicates resolve to
    /// one row through the unique index.
    fn insert_intent(
        &self,
        new: &NewTransfer,
    ) -> impl Future<Output = Result<Intent, StoreError>> + Send;

    fn get(
        &self,
        transfer_id: &str,
    ) -> impl Future<Output = Result<Option<TransferRecord>, StoreError>> + Send;

    fn find_by_key(
        &self,
        user_id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<TransferRecord>, StoreError>> + Send;

    /// Compare-and-set `started -> committed | aborted`, then the row as it now stands:
    /// either this decision or the one somebody else recorded first. Never undecided.
    fn record_decision(
        &self,
        transfer_id: &str,
        decision: Decision,
        failure_reason: Option<&str>,
        now_ms: u64,
    ) -> impl Future<Output = Result<TransferRecord, StoreError>> + Send;

    /// Guarded `committed -> succeeded` or `aborted -> failed`, then the row as it now
    /// stands (final).
    fn record_outcome(
        &self,
        transfer_id: &str,
        outcome: RecordedState,
        now_ms: u64,
    ) -> impl Future<Output = Result<TransferRecord, StoreError>> + Send;

    /// Unfinished transfers due by `now_ms` and not leased, oldest due first.
    fn list_due(
        &self,
        now_ms: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<TransferRecord>, StoreError>> + Send;

    /// Takes the lease on a due, unfinished transfer unless another owner holds a live
    /// one. True when this owner now holds it.
    fn claim(
        &self,
        transfer_id: &str,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Sets when to look again and releases `owner`'s lease; `count_attempt` adds one to
    /// `attempts` (an attempt that left the transfer unfinished).
    fn reschedule(
        &self,
        transfer_id: &str,
        owner: &str,
        next_attempt_at_ms: u64,
        count_attempt: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases `owner`'s lease on one transfer.
    fn release(
        &self,
        transfer_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases every lease `owner` holds (graceful shutdown); returns how many.
    fn release_all(&self, owner: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The most recent transfers, newest first.
    fn recent(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<TransferRecord>, StoreError>> + Send;

    /// The unfinished transfers, counted by state (the reconciler's backlog metrics).
    fn backlog(&self) -> impl Future<Output = Result<Backlog, StoreError>> + Send;
}

/// The unfinished transfers: how many in each unfinished state, and the oldest's creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Undecided.
    pub started: u64,
    /// Decided, settling.
    pub committed: u64,
    pub aborted: u64,
    /// `created_at_ms` of the oldest unfinished transfer, if any.
    pub oldest_created_at_ms: Option<u64>,
}

impl Backlog {
    /// Adds `count` transfers in `state`, the oldest created at `oldest_ms`.
    pub fn add(&mut self, state: RecordedState, count: u64, oldest_ms: u64) {
        match state {
            RecordedState::Started => self.started += count,
            RecordedState::Committed => self.committed += count,
            RecordedState::Aborted => self.aborted += count,
            // Final: not a backlog.
            _ => return,
        }
        self.oldest_created_at_ms = Some(
            self.oldest_created_at_ms
                .map_or(oldest_ms, |oldest| oldest.min(oldest_ms)),
        );
    }
}
