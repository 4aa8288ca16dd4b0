//! [`TransferStore`] over SQL (SQLite or PostgreSQL through sqlx's Any driver). Every
//! write is one statement: the gateway and the reconciler are separate processes sharing
//! one SQLite file, where a read-then-write transaction would invite SQLITE_BUSY on the
//! lock upgrade; a guarded UPDATE needs no lock held across statements.

use std::time::Duration;

use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Decision, RecordedState};
use service_kit::db::{self, Backend, Db, PoolSettings};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Intent, MIGRATIONS, NewTransfer, StoreError, TransferRecord, TransferStore};

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
         decided_at_ms, updated_at_ms, attempts, next_attempt_at_ms, lease_owner, lease_until_ms"
    };
}

const INSERT_INTENT: &str = concat!(
    "INSERT INTO transfers (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'started', NULL, $9, NULL, $9, 0, $10, NULL, NULL) \
     ON CONFLICT DO NOTHING"
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
const RECORD_DECISION: &str = "UPDATE transfers SET state = $2, failure_reason = $3, \
     decided_at_ms = $4, updated_at_ms = $4 WHERE transfer_id = $1 AND state = 'started'";
const RECORD_OUTCOME: &str = "UPDATE transfers SET state = $2, updated_at_ms = $3 \
     WHERE transfer_id = $1 AND state = $4";
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

#[derive(Clone, Debug)]
pub struct SqlTransferStore {
    db: Db,
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
        Ok(SqlTransferStore { db })
    }

    /// Over an already migrated database.
    pub fn new(db: Db) -> SqlTransferStore {
        SqlTransferStore { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn error(&self, err: sqlx::Error) -> StoreError {
        store_error(self.db.backend, err)
    }

    async fn fetch_by_id(&self, transfer_id: &str) -> Result<Option<TransferRecord>, StoreError> {
        sqlx::query(SELECT_BY_ID)
            .bind(transfer_id)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?
            .map(|row| record_from_row(&row))
            .transpose()
    }

    async fn fetch_existing(&self, transfer_id: &str) -> Result<TransferRecord, StoreError> {
        self.fetch_by_id(transfer_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("transfer {transfer_id} is missing")))
    }
}

impl TransferStore for SqlTransferStore {
    async fn insert_intent(&self, new: &NewTransfer) -> Result<Intent, StoreError> {
        sqlx::query(INSERT_INTENT)
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
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        // Whoever holds the key now: us, or the request that got there first.
        let record = self
            .find_by_key(&new.user_id, &new.idempotency_key)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "idempotency key {:?} of user {:?} vanished after its insert",
                    new.idempotency_key, new.user_id
                ))
            })?;
        Ok(if record.transfer_id == new.transfer_id {
            Intent::Created(record)
        } else {
            Intent::Existing(record)
        })
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
        sqlx::query(RECORD_DECISION)
            .bind(transfer_id)
            .bind(decision.recorded_state().as_str())
            .bind(failure_reason)
            .bind(ms_to_db(now_ms))
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        let record = self.fetch_existing(transfer_id).await?;
        if !record.state.is_decided() {
            return Err(StoreError::Corrupt(format!(
                "transfer {transfer_id} is still undecided after its compare-and-set"
            )));
        }
        Ok(record)
    }

    async fn record_outcome(
        &self,
        transfer_id: &str,
        outcome: RecordedState,
        now_ms: u64,
    ) -> Result<TransferRecord, StoreError> {
        let expected = match outcome {
            RecordedState::Succeeded => RecordedState::Committed,
            RecordedState::Failed => RecordedState::Aborted,
            other => panic!("{other:?} is not an outcome"),
        };
        sqlx::query(RECORD_OUTCOME)
            .bind(transfer_id)
            .bind(outcome.as_str())
            .bind(ms_to_db(now_ms))
            .bind(expected.as_str())
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.error(e))?;
        let record = self.fetch_existing(transfer_id).await?;
        if record.state != outcome {
            return Err(StoreError::Corrupt(format!(
                "transfer {transfer_id} is {} after recording {}",
                record.state.as_str(),
                outcome.as_str()
            )));
        }
        Ok(record)
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
