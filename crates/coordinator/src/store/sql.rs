//! [`TransferStore`] over SQL (SQLite or PostgreSQL through sqlx's Any driver). Every
//! protocol write is one guarded statement that returns the row it wrote (a re-read only
//! when its guard did not match), and concurrent writes share a transaction and its
//! commit (`service_kit::group_commit`). The gateway and the reconciler are separate
//! processes sharing one SQLite file: every such transaction starts with a write, so it
//! takes the file's write lock at once instead of upgrading a read lock (which invites
//! SQLITE_BUSY).

use std::time::Duration;

use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Decision, RecordedState};
use service_kit::db::{self, Backend, Db, PoolSettings};
use service_kit::group_commit::{BoxFuture, GroupCommit, GroupCommitSettings, Job};
use service_kit::metrics::StoreTimer;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Backlog, Intent, MIGRATIONS, NewTransfer, StoreError, TransferRecord, TransferStore};

/// Migration attempts at start-up. SQLite has no migration lock, so the gateway and the
/// reconciler starting together on one file may collide once; the loser retries and
/// finds the schema in place.
const MIGRATE_ATTEMPTS_MAX: u32 = 5;
const MIGRATE_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Every column, in the order `record_from_row` reads them.
macro_rules! columns {
    () => {
        "transfer_id, user_id, idempotency_key, fingerprint, external_account_id, \
         internal_account_id, amount_minor, currency, state, failure_reason, created_at_ms, \
         decided_at_ms, updated_at_ms, attempts, next_attempt_at_ms, lease_owner, lease_until_ms, \
         trace_context"
    };
}

mod batch;

const INSERT_INTENT: &str = concat!(
    "INSERT INTO transfers (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'started', NULL, $9, NULL, $9, 0, $10, NULL, NULL, $11) \
     ON CONFLICT DO NOTHING RETURNING ",
    columns!()
);
const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM transfers WHERE transfer_id = $1"
);
const SELECT_BY_KEY: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM transfers WHERE user_id = $1 AND idempotency_key = $2"
);
// The writes that answer with the row they wrote (RETURNING): one statement per
// protocol step in the common case, and a read only when the guard did not match.
const RECORD_DECISION: &str = concat!(
    "UPDATE transfers SET state = $2, failure_reason = $3, \
     decided_at_ms = $4, updated_at_ms = $4 WHERE transfer_id = $1 AND state = 'started' \
     RETURNING ",
    columns!()
);
const RECORD_OUTCOME: &str = concat!(
    "UPDATE transfers SET state = $2, updated_at_ms = $3 \
     WHERE transfer_id = $1 AND state = $4 RETURNING ",
    columns!()
);
/// [`RECORD_OUTCOME`] committing without waiting for the WAL flush on PostgreSQL
/// (`LogWrite::must_flush`): `set_config(.., true)` is `SET LOCAL`, and a lone statement
/// is its own transaction, so the setting holds for this commit and no other. It is
/// evaluated only for the row the guard matched (a write that matched nothing commits
/// nothing to flush).
const RECORD_OUTCOME_LAZY_POSTGRES: &str = concat!(
    "UPDATE transfers SET state = $2, updated_at_ms = $3 \
     WHERE transfer_id = $1 AND state = $4 \
     AND set_config('synchronous_commit', 'off', true) = 'off' RETURNING ",
    columns!()
);
const SELECT_DUE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM transfers WHERE state IN ('started', 'committed', 'aborted') \
     AND next_attempt_at_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
     ORDER BY next_attempt_at_ms, transfer_id LIMIT $2"
);
/// The lease is taken only on a transfer that is still due and unfinished, so a replica
/// acting on a stale listing cannot pick up what another one just finished or
/// rescheduled.
const CLAIM: &str = "UPDATE transfers SET lease_owner = $2, lease_until_ms = $3 \
     WHERE transfer_id = $1 AND (lease_until_ms IS NULL OR lease_until_ms < $4) \
     AND state IN ('started', 'committed', 'aborted') AND next_attempt_at_ms <= $4";
const RESCHEDULE: &str = "UPDATE transfers SET attempts = attempts + $4, \
     next_attempt_at_ms = $3, lease_owner = NULL, lease_until_ms = NULL \
     WHERE transfer_id = $1 AND lease_owner = $2";
const RELEASE: &str = "UPDATE transfers SET lease_owner = NULL, lease_until_ms = NULL \
     WHERE transfer_id = $1 AND lease_owner = $2";
const RELEASE_ALL: &str =
    "UPDATE transfers SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1";
const SELECT_RECENT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM transfers ORDER BY created_at_ms DESC, transfer_id DESC LIMIT $1"
);
/// The backlog: a count and the oldest creation per unfinished state (both back ends).
const SELECT_BACKLOG: &str = "SELECT state, COUNT(*) AS n, MIN(created_at_ms) AS oldest \
     FROM transfers WHERE state IN ('started', 'committed', 'aborted') GROUP BY state";

#[derive(Clone, Debug)]
pub struct SqlTransferStore {
    db: Db,
    /// The protocol's writes (intent, decision, outcome), committed in groups.
    writes: GroupCommit<LogWrite>,
}

impl SqlTransferStore {
    /// Connects and applies the transfer log's migrations.
    pub async fn open(url: &str, pool: PoolSettings) -> anyhow::Result<SqlTransferStore> {
        let db = db::connect(url, pool).await?;
        let mut attempt = 1;
        loop {
            match db::migrate(&db, &MIGRATIONS).await {
                Ok(()) => break,
                Err(err) if attempt < MIGRATE_ATTEMPTS_MAX => {
                    tracing::warn!(attempt, error = ?err, "migration failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(MIGRATE_RETRY_DELAY).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(SqlTransferStore::new(db))
    }

    /// Over an already migrated database. Starts the group-commit workers, so it must be
    /// called inside a Tokio runtime.
    pub fn new(db: Db) -> SqlTransferStore {
        let settings = GroupCommitSettings::default();
        SqlTransferStore {
            writes: GroupCommit::start(db.clone(), settings),
            db,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn error(&self, err: sqlx::Error) -> StoreError {
        store_error(self.db.backend, err)
    }

    async fn write(&self, op: Op) -> Result<Written, StoreError> {
        self.writes
            .submit(LogWrite {
                backend: self.db.backend,
                op,
            })
            .await
    }

    async fn fetch_by_id(&self, transfer_id: &str) -> Result<Option<TransferRecord>, StoreError> {
        select_by_id(&self.db.pool, self.db.backend, transfer_id).await
    }
}

/// The writes are timed as a whole (`banktransfer_store_duration_seconds`), waiting for
/// their group commit included: what the caller waits.
impl TransferStore for SqlTransferStore {
    async fn insert_intent(&self, new: &NewTransfer) -> Result<Intent, StoreError> {
        let _timer = StoreTimer::start("record_intent");
        match self.write(Op::Intent(new.clone())).await? {
            Written::Intent(intent) => Ok(intent),
            Written::Record(_) => unreachable!("an intent answers with an intent"),
        }
    }

    async fn get(&self, transfer_id: &str) -> Result<Option<TransferRecord>, StoreError> {
        self.fetch_by_id(transfer_id).await
    }

    async fn find_by_key(
        &self,
        user_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<TransferRecord>, StoreError> {
        sqlx::query(SELECT_BY_KEY)
            .bind(user_id)
            .bind(idempotency_key)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?
            .map(|row| record_from_row(&row))
            .transpose()
    }

    async fn record_decision(
        &self,
        transfer_id: &str,
        decision: Decision,
        failure_reason: Option<&str>,
        now_ms: u64,
    ) -> Result<TransferRecord, StoreError> {
        let _timer = StoreTimer::start("decide");
        let op = Op::Decision {
            transfer_id: transfer_id.to_owned(),
            decision,
            failure_reason: failure_reason.map(str::to_owned),
            now_ms,
        };
        match self.write(op).await? {
            Written::Record(record) => Ok(record),
            Written::Intent(_) => unreachable!("a decision answers with a record"),
        }
    }

    async fn record_outcome(
        &self,
        transfer_id: &str,
        outcome: RecordedState,
        now_ms: u64,
    ) -> Result<TransferRecord, StoreError> {
        let _timer = StoreTimer::start("record_outcome");
        let op = Op::Outcome {
            transfer_id: transfer_id.to_owned(),
            outcome,
            now_ms,
        };
        match self.write(op).await? {
            Written::Record(record) => Ok(record),
            Written::Intent(_) => unreachable!("an outcome answers with a record"),
        }
    }

    async fn list_due(&self, now_ms: u64, limit: u32) -> Result<Vec<TransferRecord>, StoreError> {
        let rows = sqlx::query(SELECT_DUE)
            .bind(ms_to_db(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn claim(
        &self,
        transfer_id: &str,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(CLAIM)
            .bind(transfer_id)
            .bind(owner)
            .bind(ms_to_db(lease_until_ms))
            .bind(ms_to_db(now_ms))
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(result.rows_affected() == 1)
    }

    async fn reschedule(
        &self,
        transfer_id: &str,
        owner: &str,
        next_attempt_at_ms: u64,
        count_attempt: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(RESCHEDULE)
            .bind(transfer_id)
            .bind(owner)
            .bind(ms_to_db(next_attempt_at_ms))
            .bind(i32::from(count_attempt))
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn release(&self, transfer_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(RELEASE)
            .bind(transfer_id)
            .bind(owner)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let result = sqlx::query(RELEASE_ALL)
            .bind(owner)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(result.rows_affected())
    }

    async fn recent(&self, limit: u32) -> Result<Vec<TransferRecord>, StoreError> {
        let rows = sqlx::query(SELECT_RECENT)
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let rows = sqlx::query(SELECT_BACKLOG)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut backlog = Backlog::default();
        for row in rows {
            let state: String = row.try_get("state").map_err(|e| self.error(e))?;
            let count: i64 = row.try_get("n").map_err(|e| self.error(e))?;
            let oldest: i64 = row.try_get("oldest").map_err(|e| self.error(e))?;
            let state = RecordedState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown transfer state {state:?}")))?;
            backlog.add(
                state,
                u64::try_from(count).unwrap_or_default(),
                ms_from_db("created_at_ms", oldest)?,
            );
        }
        Ok(backlog)
    }
}

/// A decision's compare-and-set wrote `record`, or found it decided by someone else.
fn decided(record: TransferRecord) -> Result<Written, StoreError> {
    if !record.state.is_decided() {
        return Err(StoreError::Corrupt(format!(
            "transfer {} is still undecided after its compare-and-set",
            record.transfer_id
        )));
    }
    Ok(Written::Record(record))
}

/// The state an outcome is recorded over.
fn state_before(outcome: RecordedState) -> RecordedState {
    match outcome {
        RecordedState::Succeeded => RecordedState::Committed,
        RecordedState::Failed => RecordedState::Aborted,
        other => panic!("{other:?} is not an outcome"),
    }
}

/// Recording `outcome` wrote `record`, or found it recorded already.
fn finished(record: TransferRecord, outcome: RecordedState) -> Result<Written, StoreError> {
    if record.state != outcome {
        return Err(StoreError::Corrupt(format!(
            "transfer {} is {} after recording {}",
            record.transfer_id,
            record.state.as_str(),
            outcome.as_str()
        )));
    }
    Ok(Written::Record(record))
}

/// One transfer by id, on the pool or inside a batch's transaction.
async fn select_by_id<'e, E>(
    executor: E,
    backend: Backend,
    transfer_id: &str,
) -> Result<Option<TransferRecord>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(SELECT_BY_ID)
        .bind(transfer_id)
        .fetch_optional(executor)
        .await
        .map_err(|e| store_error(backend, e))?
        .map(|row| record_from_row(&row))
        .transpose()
}

/// Epoch milliseconds fit an i64 for the next 292 million years.
fn ms_to_db(ms: u64) -> i64 {
    i64::try_from(ms).expect("epoch milliseconds fit in i64")
}

fn ms_from_db(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative: {value}")))
}

fn record_from_row(row: &AnyRow) -> Result<TransferRecord, StoreError> {
    let transfer_id: String = get(row, "transfer_id")?;
    let state_name: String = get(row, "state")?;
    let state = RecordedState::parse(&state_name).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "transfer {transfer_id}: unknown state {state_name:?}"
        ))
    })?;
    let amount_minor: i64 = get(row, "amount_minor")?;
    let currency: String = get(row, "currency")?;
    let amount = Money::positive(amount_minor, &currency)
        .map_err(|e| StoreError::Corrupt(format!("transfer {transfer_id}: {e}")))?;
    let attempts: i64 = get(row, "attempts")?;
    let optional_ms = |column: &str| -> Result<Option<u64>, StoreError> {
        get::<Option<i64>>(row, column)?
            .map(|v| ms_from_db(column, v))
            .transpose()
    };
    Ok(TransferRecord {
        user_id: get(row, "user_id")?,
        idempotency_key: get(row, "idempotency_key")?,
        fingerprint: get(row, "fingerprint")?,
        external_account_id: get(row, "external_account_id")?,
        internal_account_id: get(row, "internal_account_id")?,
        amount,
        state,
        failure_reason: get(row, "failure_reason")?,
        created_at_ms: ms_from_db("created_at_ms", get(row, "created_at_ms")?)?,
        decided_at_ms: optional_ms("decided_at_ms")?,
        updated_at_ms: ms_from_db("updated_at_ms", get(row, "updated_at_ms")?)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("attempts out of range: {attempts}")))?,
        next_attempt_at_ms: ms_from_db("next_attempt_at_ms", get(row, "next_attempt_at_ms")?)?,
        lease_owner: get(row, "lease_owner")?,
        lease_until_ms: optional_ms("lease_until_ms")?,
        trace_context: get(row, "trace_context")?,
        transfer_id,
    })
}

fn get<T>(row: &AnyRow, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// Unreachable or busy means "unknown": the caller answers UNAVAILABLE (or, deciding,
/// stops and lets the reconciler find out). Anything else is a refused statement.
fn store_error(backend: Backend, err: sqlx::Error) -> StoreError {
    if db::is_unavailable(&err) || (backend == Backend::Sqlite && is_sqlite_busy(&err)) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Failed(err.to_string())
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), with any extended code: another process held the
/// file past the busy timeout.
fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// One protocol write to the transfer log, run in a group-commit batch (or alone).
#[derive(Clone, Debug)]
enum Op {
    Intent(NewTransfer),
    Decision {
        transfer_id: String,
        decision: Decision,
        failure_reason: Option<String>,
        now_ms: u64,
    },
    Outcome {
        transfer_id: String,
        outcome: RecordedState,
        now_ms: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Written {
    Intent(Intent),
    Record(TransferRecord),
}

#[derive(Debug)]
struct LogWrite {
    backend: Backend,
    op: Op,
}

impl Job for LogWrite {
    type Output = Written;
    type Error = StoreError;

    /// The whole batch with one statement per kind of write (`batch`).
    fn run_many<'c>(
        jobs: &'c [&'c Self],
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Vec<Written>, StoreError>> {
        Box::pin(batch::write_many(conn, jobs))
    }

    /// Without BEGIN and COMMIT: every write is one statement, which is a transaction of
    /// its own (durable once it returns), and a write whose guard did not match only
    /// reads the row it met afterwards, which a transaction would not change (each
    /// statement sees what is committed when it starts, inside a transaction or not). On
    /// PostgreSQL that saves two of a lone write's three round trips, and at low load most
    /// writes are alone.
    fn run_alone<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Written, StoreError>> {
        Box::pin(self.write_in(conn))
    }

    fn unavailable(detail: String) -> StoreError {
        StoreError::Unavailable(detail)
    }

    /// An outcome restates what is durable on the participants (both confirms, or both
    /// cancels after a durable abort): lost in a crash of the database, the row is back
    /// at `committed` or `aborted`, which reads the same (`Driver::as_read`), and the
    /// reconciler settles it again and writes the outcome. No one waits for it either:
    /// the client was answered before it. So it need not wait for a WAL flush, which at
    /// 200 transfers/s is one flush in seven and a third of the transfer log's.
    fn must_flush(&self) -> bool {
        !matches!(self.op, Op::Outcome { .. })
    }
}

impl LogWrite {
    async fn write_in(&self, conn: &mut AnyConnection) -> Result<Written, StoreError> {
        let error = |e| store_error(self.backend, e);
        match &self.op {
            Op::Intent(new) => {
                let inserted = sqlx::query(INSERT_INTENT)
                    .bind(new.transfer_id.as_str())
                    .bind(new.user_id.as_str())
                    .bind(new.idempotency_key.as_str())
                    .bind(new.fingerprint.as_str())
                    .bind(new.external_account_id.as_str())
                    .bind(new.internal_account_id.as_str())
                    .bind(new.amount.minor_units())
                    .bind(new.amount.currency().as_str())
                    .bind(ms_to_db(new.created_at_ms))
                    .bind(ms_to_db(new.next_attempt_at_ms))
                    .bind(new.trace_context.as_deref())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(error)?;
                match inserted {
                    Some(row) => Ok(Written::Intent(Intent::Created(record_from_row(&row)?))),
                    None => self.taken_key(conn, new).await,
                }
            }
            Op::Decision {
                transfer_id,
                decision,
                failure_reason,
                now_ms,
            } => {
                let written = sqlx::query(RECORD_DECISION)
                    .bind(transfer_id.as_str())
                    .bind(decision.recorded_state().as_str())
                    .bind(failure_reason.as_deref())
                    .bind(ms_to_db(*now_ms))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(error)?;
                // No row: the guard did not match, someone decided first; read theirs.
                let record = match written {
                    Some(row) => record_from_row(&row)?,
                    None => self.existing(conn, transfer_id).await?,
                };
                decided(record)
            }
            Op::Outcome {
                transfer_id,
                outcome,
                now_ms,
            } => {
                let statement = match self.backend {
                    Backend::Postgres => RECORD_OUTCOME_LAZY_POSTGRES,
                    Backend::Sqlite => RECORD_OUTCOME,
                };
                let written = sqlx::query(statement)
                    .bind(transfer_id.as_str())
                    .bind(outcome.as_str())
                    .bind(ms_to_db(*now_ms))
                    .bind(state_before(*outcome).as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(error)?;
                let record = match written {
                    Some(row) => record_from_row(&row)?,
                    None => self.existing(conn, transfer_id).await?,
                };
                finished(record, *outcome)
            }
        }
    }

    /// An intent that inserted nothing: its key is taken, by the request that got there
    /// first. Answers with that request's transfer.
    async fn taken_key(
        &self,
        conn: &mut AnyConnection,
        new: &NewTransfer,
    ) -> Result<Written, StoreError> {
        let found = sqlx::query(SELECT_BY_KEY)
            .bind(new.user_id.as_str())
            .bind(new.idempotency_key.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| store_error(self.backend, e))?;
        let record = found
            .map(|row| record_from_row(&row))
            .transpose()?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "idempotency key {:?} of user {:?} is neither free nor taken",
                    new.idempotency_key, new.user_id
                ))
            })?;
        if record.transfer_id == new.transfer_id {
            return Err(StoreError::Corrupt(format!(
                "transfer {} exists although its insert wrote nothing",
                new.transfer_id
            )));
        }
        Ok(Written::Intent(Intent::Existing(record)))
    }

    async fn existing(
        &self,
        conn: &mut AnyConnection,
        transfer_id: &str,
    ) -> Result<TransferRecord, StoreError> {
        select_by_id(&mut *conn, self.backend, transfer_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("transfer {transfer_id} is missing")))
    }
}

#[cfg(test)]
mod tests;
