//! Every SQL statement of the reservation book, and the mapping between rows and the
//! protocol's types. Statements run on a connection the caller owns (usually inside its
//! transaction); this module never begins or commits anything.
//!
//! The statements are the same on SQLite and PostgreSQL, except for the row locks
//! ([`Lock`]), which only PostgreSQL has (SQLite serializes whole transactions).
//!
//! It is also the one place sqlx's errors become storage-neutral [`StoreError`]s
//! ([`store_error`], through [`SqlError`]).

use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::money::{Currency, Money};
use banktransfer_protocol::reservation::{
    AccountView, Balance, Refusal, RefusalReason, Reservation, ReservationStatus, Terms,
};
use service_kit::db::{self, Backend};
use sqlx::AnyConnection;

use crate::book::{NewAccount, StoreError};

/// A failed statement before it leaves the SQL store: a unique violation is kept apart,
/// since it means a concurrent call recorded the same transfer id first and the caller
/// re-reads once; anything else is already what the store reports.
#[derive(Debug)]
pub enum SqlError {
    UniqueViolation(StoreError),
    Other(StoreError),
}

impl From<sqlx::Error> for SqlError {
    fn from(err: sqlx::Error) -> SqlError {
        if db::is_unique_violation(&err) {
            SqlError::UniqueViolation(store_error(err))
        } else {
            SqlError::Other(store_error(err))
        }
    }
}

impl From<StoreError> for SqlError {
    fn from(err: StoreError) -> SqlError {
        SqlError::Other(err)
    }
}

impl From<SqlError> for StoreError {
    fn from(err: SqlError) -> StoreError {
        match err {
            SqlError::UniqueViolation(err) | SqlError::Other(err) => err,
        }
    }
}

/// sqlx's error as the book reports it: a database that could not be reached or timed
/// out is [`StoreError::Unavailable`] (the handlers answer UNAVAILABLE), anything else
/// [`StoreError::Failed`].
pub fn store_error(err: sqlx::Error) -> StoreError {
    if db::is_unavailable(&err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Failed(err.to_string())
    }
}

macro_rules! reservation_columns {
    () => {
        "transfer_id, account_id, user_id, amount_minor, currency, status, refusal_reason, \
         refusal_message"
    };
}

macro_rules! select_reservation {
    () => {
        concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE transfer_id = $1"
        )
    };
}

macro_rules! select_account {
    () => {
        "SELECT account_id, user_id, currency, available_minor, reserved_minor, \
         confirmed_minor FROM accounts WHERE account_id = $1"
    };
}

pub mod lone;

const SELECT_RESERVATION: &str = select_reservation!();
const SELECT_ACCOUNT: &str = select_account!();

// Every transfer id is at least one byte long, so the first page starts after "".
const LIST_RESERVATIONS: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE transfer_id > $1 ORDER BY transfer_id LIMIT $2"
);

// One statement, so each account's balances and its reservation totals come from one
// snapshot (PostgreSQL takes one per statement; SQLite serializes) and agree with each
// other. Totals count only the account's own currency: a reserve in another currency
// is refused, so anything else is for the audit's reservation clause to see. SUM over
// BIGINT is NUMERIC on PostgreSQL, hence the casts.
const LIST_ACCOUNTS: &str = "SELECT a.account_id, a.user_id, a.currency, a.available_minor, \
     a.reserved_minor, a.confirmed_minor, a.opening_minor, \
     CAST(COALESCE((SELECT SUM(r.amount_minor) FROM reservations r \
         WHERE r.account_id = a.account_id AND r.currency = a.currency \
         AND r.status = 'held'), 0) AS BIGINT), \
     CAST(COALESCE((SELECT SUM(r.amount_minor) FROM reservations r \
         WHERE r.account_id = a.account_id AND r.currency = a.currency \
         AND r.status = 'confirmed'), 0) AS BIGINT) \
     FROM accounts a WHERE a.account_id > $1 ORDER BY a.account_id LIMIT $2";

const INSERT_RESERVATION: &str = "INSERT INTO reservations (transfer_id, account_id, user_id, \
     amount_minor, currency, status, refusal_reason, refusal_message, created_at_ms, \
     updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const UPDATE_RESERVATION_STATUS: &str = "UPDATE reservations SET status = $2, \
     refusal_reason = $3, refusal_message = $4, updated_at_ms = $5 WHERE transfer_id = $1";

const UPDATE_BALANCE: &str = "UPDATE accounts SET available_minor = $2, reserved_minor = $3, \
     confirmed_minor = $4 WHERE account_id = $1";

// `DO NOTHING` makes a concurrent open of the same account a no-op instead of an error;
// the caller reads the row back to see whose it is.
const INSERT_ACCOUNT_IF_ABSENT: &str = "INSERT INTO accounts (account_id, user_id, currency, \
     available_minor, reserved_minor, confirmed_minor, opening_minor, opened_at_ms) \
     VALUES ($1, $2, $3, $4, 0, 0, $5, $6) ON CONFLICT (account_id) DO NOTHING";

/// The statements that read and write many reservations at once (`store::batch`): the
/// rows travel as one JSON array parameter, so each statement has one fixed text (it is
/// prepared once per connection) whatever the batch's size. The two back ends unpack
/// JSON differently; the statements mean the same.
pub struct BatchSql {
    select_reservations: &'static str,
    select_accounts: &'static str,
    insert_reservations: &'static str,
    update_reservations: &'static str,
    update_balances: &'static str,
}

// PostgreSQL locks the rows in the order of ORDER BY (the lock is taken above the sort),
// so two batches lock the rows they share in the same order. Every row is found through
// its primary key with `= ANY(ARRAY(...))`: joined with the JSON rows instead, the
// planner (which guesses 100 of them) prefers scanning a small table whole, which is
// every account once per batch.
const BATCH_POSTGRES: BatchSql = BatchSql {
    select_reservations: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE transfer_id = ANY(ARRAY( \
         SELECT json_array_elements_text(CAST($1 AS JSON)))) ORDER BY transfer_id FOR UPDATE"
    ),
    select_accounts: "SELECT account_id, user_id, currency, available_minor, reserved_minor, \
         confirmed_minor FROM accounts WHERE account_id = ANY(ARRAY( \
         SELECT json_array_elements_text(CAST($1 AS JSON)))) ORDER BY account_id FOR UPDATE",
    insert_reservations: "INSERT INTO reservations (transfer_id, account_id, user_id, \
         amount_minor, currency, status, refusal_reason, refusal_message, created_at_ms, \
         updated_at_ms) SELECT r.transfer_id, r.account_id, r.user_id, r.amount_minor, \
         r.currency, r.status, r.refusal_reason, r.refusal_message, r.at_ms, r.at_ms \
         FROM json_to_recordset(CAST($1 AS JSON)) AS r(transfer_id TEXT, account_id TEXT, \
         user_id TEXT, amount_minor BIGINT, currency TEXT, status TEXT, refusal_reason TEXT, \
         refusal_message TEXT, at_ms BIGINT)",
    update_reservations: "UPDATE reservations AS r SET status = u.status, \
         refusal_reason = u.refusal_reason, refusal_message = u.refusal_message, \
         updated_at_ms = u.at_ms FROM json_to_recordset(CAST($1 AS JSON)) AS u(transfer_id \
         TEXT, status TEXT, refusal_reason TEXT, refusal_message TEXT, at_ms BIGINT) \
         WHERE r.transfer_id = u.transfer_id AND r.transfer_id = ANY(ARRAY( \
         SELECT x ->> 'transfer_id' FROM json_array_elements(CAST($1 AS JSON)) AS x))",
    update_balances: "UPDATE accounts AS a SET available_minor = b.available_minor, \
         reserved_minor = b.reserved_minor, confirmed_minor = b.confirmed_minor \
         FROM json_to_recordset(CAST($1 AS JSON)) AS b(account_id TEXT, available_minor \
         BIGINT, reserved_minor BIGINT, confirmed_minor BIGINT) \
         WHERE a.account_id = b.account_id AND a.account_id = ANY(ARRAY( \
         SELECT x ->> 'account_id' FROM json_array_elements(CAST($1 AS JSON)) AS x))",
};

const BATCH_SQLITE: BatchSql = BatchSql {
    select_reservations: concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE transfer_id IN (SELECT value FROM json_each($1)) \
         ORDER BY transfer_id"
    ),
    select_accounts: "SELECT account_id, user_id, currency, available_minor, reserved_minor, \
         confirmed_minor FROM accounts WHERE account_id IN (SELECT value FROM json_each($1)) \
         ORDER BY account_id",
    insert_reservations: "INSERT INTO reservations (transfer_id, account_id, user_id, \
         amount_minor, currency, status, refusal_reason, refusal_message, created_at_ms, \
         updated_at_ms) SELECT value ->> '$.transfer_id', value ->> '$.account_id', \
         value ->> '$.user_id', value ->> '$.amount_minor', value ->> '$.currency', \
         value ->> '$.status', value ->> '$.refusal_reason', value ->> '$.refusal_message', \
         value ->> '$.at_ms', value ->> '$.at_ms' FROM json_each($1)",
    update_reservations: "UPDATE reservations SET status = u.status, \
         refusal_reason = u.refusal_reason, refusal_message = u.refusal_message, \
         updated_at_ms = u.at_ms FROM (SELECT value ->> '$.transfer_id' AS transfer_id, \
         value ->> '$.status' AS status, value ->> '$.refusal_reason' AS refusal_reason, \
         value ->> '$.refusal_message' AS refusal_message, value ->> '$.at_ms' AS at_ms \
         FROM json_each($1)) AS u WHERE reservations.transfer_id = u.transfer_id",
    update_balances: "UPDATE accounts SET available_minor = b.available_minor, \
         reserved_minor = b.reserved_minor, confirmed_minor = b.confirmed_minor \
         FROM (SELECT value ->> '$.account_id' AS account_id, \
         value ->> '$.available_minor' AS available_minor, \
         value ->> '$.reserved_minor' AS reserved_minor, \
         value ->> '$.confirmed_minor' AS confirmed_minor FROM json_each($1)) AS b \
         WHERE accounts.account_id = b.account_id",
};

impl BatchSql {
    pub fn of(backend: Backend) -> &'static BatchSql {
        match backend {
            Backend::Postgres => &BATCH_POSTGRES,
            Backend::Sqlite => &BATCH_SQLITE,
        }
    }

    /// The reservations of `transfer_ids` that exist, locked on PostgreSQL.
    pub async fn select_reservations(
        &self,
        conn: &mut AnyConnection,
        transfer_ids: &[&str],
    ) -> Result<Vec<Reservation>, SqlError> {
        let rows: Vec<ReservationRow> = sqlx::query_as(self.select_reservations)
            .bind(json_array(transfer_ids))
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(reservation_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The accounts of `account_ids` that exist, locked on PostgreSQL.
    pub async fn select_accounts(
        &self,
        conn: &mut AnyConnection,
        account_ids: &[&str],
    ) -> Result<Vec<AccountView>, SqlError> {
        let rows: Vec<AccountRow> = sqlx::query_as(self.select_accounts)
            .bind(json_array(account_ids))
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(account_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Inserts new reservations, each with the time its call was made. A unique
    /// violation means a concurrent call recorded one of them first.
    pub async fn insert_reservations(
        &self,
        conn: &mut AnyConnection,
        reservations: &[(Reservation, u64)],
    ) -> Result<(), SqlError> {
        let rows = reservations.iter().map(|(reservation, now_ms)| {
            let terms = reservation.terms.as_ref();
            let (reason, message) = refusal_columns(&reservation.status);
            serde_json::json!({
                "transfer_id": reservation.transfer_id,
                "account_id": terms.map(|t| t.account_id.as_str()),
                "user_id": terms.map(|t| t.user_id.as_str()),
                "amount_minor": terms.map(|t| t.amount.minor_units()),
                "currency": terms.map(|t| t.amount.currency().as_str().to_owned()),
                "status": reservation.status.as_str(),
                "refusal_reason": reason,
                "refusal_message": message,
                "at_ms": sql_ms(*now_ms),
            })
        });
        write_each_once(
            conn,
            self.insert_reservations,
            rows,
            "inserting reservations",
        )
        .await
    }

    /// Records new statuses. Each row was read (and locked) in this transaction and
    /// each transfer id appears once, so exactly one row changes per reservation.
    pub async fn update_reservations(
        &self,
        conn: &mut AnyConnection,
        reservations: &[(Reservation, u64)],
    ) -> Result<(), SqlError> {
        let rows = reservations.iter().map(|(reservation, now_ms)| {
            let (reason, message) = refusal_columns(&reservation.status);
            serde_json::json!({
                "transfer_id": reservation.transfer_id,
                "status": reservation.status.as_str(),
                "refusal_reason": reason,
                "refusal_message": message,
                "at_ms": sql_ms(*now_ms),
            })
        });
        write_each_once(
            conn,
            self.update_reservations,
            rows,
            "updating reservations",
        )
        .await
    }

    /// Writes accounts' new balances, each account once. The rows were read (and
    /// locked) in this transaction, so exactly one row changes per account; anything
    /// else would lose or create money.
    pub async fn update_balances(
        &self,
        conn: &mut AnyConnection,
        balances: &[(&str, Balance)],
    ) -> Result<(), SqlError> {
        let rows = balances.iter().map(|(account_id, balance)| {
            serde_json::json!({
                "account_id": account_id,
                "available_minor": balance.available_minor,
                "reserved_minor": balance.reserved_minor,
                "confirmed_minor": balance.confirmed_minor,
            })
        });
        write_each_once(conn, self.update_balances, rows, "updating balances").await
    }
}

/// Runs a batched write over `rows` (one JSON array parameter), unless there are none,
/// and asserts that it wrote exactly one row per element.
async fn write_each_once(
    conn: &mut AnyConnection,
    statement: &'static str,
    rows: impl Iterator<Item = serde_json::Value>,
    what: &str,
) -> Result<(), SqlError> {
    let rows: Vec<serde_json::Value> = rows.collect();
    if rows.is_empty() {
        return Ok(());
    }
    let expected = rows.len() as u64;
    let result = sqlx::query(statement)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await?;
    assert_eq!(
        result.rows_affected(),
        expected,
        "{what}: {expected} rows must each be written exactly once"
    );
    Ok(())
}

/// `ids` as a JSON array of strings: the one parameter of a batched read.
pub fn json_array(ids: &[&str]) -> String {
    serde_json::Value::from(ids).to_string()
}

/// transfer_id, account_id, user_id, amount_minor, currency, status, refusal_reason,
/// refusal_message.
type ReservationRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

/// account_id, user_id, currency, available_minor, reserved_minor, confirmed_minor.
type AccountRow = (String, String, String, i64, i64, i64);

/// An [`AccountRow`], then opening_minor and the totals of the account's held and
/// confirmed reservations.
type StatementRow = (String, String, String, i64, i64, i64, Option<i64>, i64, i64);

pub async fn select_reservation(
    conn: &mut AnyConnection,
    transfer_id: &str,
) -> Result<Option<Reservation>, SqlError> {
    let row: Option<ReservationRow> = sqlx::query_as(SELECT_RESERVATION)
        .bind(transfer_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(reservation_from_row).transpose()?)
}

pub async fn select_account(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Option<AccountView>, SqlError> {
    let row: Option<AccountRow> = sqlx::query_as(SELECT_ACCOUNT)
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(account_from_row).transpose()?)
}

/// Up to `limit` reservations in transfer id order, after `after` ("" for the first).
pub async fn list_reservations(
    conn: &mut AnyConnection,
    after: &str,
    limit: u32,
) -> Result<Vec<Reservation>, SqlError> {
    let rows: Vec<ReservationRow> = sqlx::query_as(LIST_RESERVATIONS)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(reservation_from_row)
        .collect::<Result<_, _>>()?)
}

/// Up to `limit` accounts in account id order, after `after` ("" for the first), each
/// with its opening balance and reservation totals.
pub async fn list_accounts(
    conn: &mut AnyConnection,
    after: &str,
    limit: u32,
) -> Result<Vec<AccountStatement>, SqlError> {
    let rows: Vec<StatementRow> = sqlx::query_as(LIST_ACCOUNTS)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(statement_from_row)
        .collect::<Result<_, _>>()?)
}

/// Inserts a new reservation. A unique violation means a concurrent call recorded the
/// same transfer id first: the caller re-reads and replays.
pub async fn insert_reservation(
    conn: &mut AnyConnection,
    reservation: &Reservation,
    now_ms: u64,
) -> Result<(), SqlError> {
    let terms = reservation.terms.as_ref();
    let (reason, message) = refusal_columns(&reservation.status);
    sqlx::query(INSERT_RESERVATION)
        .bind(reservation.transfer_id.as_str())
        .bind(terms.map(|t| t.account_id.clone()))
        .bind(terms.map(|t| t.user_id.clone()))
        .bind(terms.map(|t| t.amount.minor_units()))
        .bind(terms.map(|t| t.amount.currency().as_str().to_owned()))
        .bind(reservation.status.as_str())
        .bind(reason)
        .bind(message)
        .bind(sql_ms(now_ms))
        .bind(sql_ms(now_ms))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a reservation's new status. The row was read (and locked) in this
/// transaction, so exactly one row changes.
pub async fn update_reservation_status(
    conn: &mut AnyConnection,
    reservation: &Reservation,
    now_ms: u64,
) -> Result<(), SqlError> {
    let (reason, message) = refusal_columns(&reservation.status);
    let result = sqlx::query(UPDATE_RESERVATION_STATUS)
        .bind(reservation.transfer_id.as_str())
        .bind(reservation.status.as_str())
        .bind(reason)
        .bind(message)
        .bind(sql_ms(now_ms))
        .execute(&mut *conn)
        .await?;
    assert_eq!(
        result.rows_affected(),
        1,
        "updating reservation {} must change exactly one row",
        reservation.transfer_id
    );
    Ok(())
}

/// Writes an account's new balance. The row was read (and locked) in this transaction,
/// so exactly one row changes; anything else would lose or create money.
pub async fn update_balance(
    conn: &mut AnyConnection,
    account_id: &str,
    balance: Balance,
) -> Result<(), SqlError> {
    let result = sqlx::query(UPDATE_BALANCE)
        .bind(account_id)
        .bind(balance.available_minor)
        .bind(balance.reserved_minor)
        .bind(balance.confirmed_minor)
        .execute(&mut *conn)
        .await?;
    assert_eq!(
        result.rows_affected(),
        1,
        "updating the balance of account {account_id} must change exactly one row"
    );
    Ok(())
}

/// Inserts the account unless its id is taken. Returns whether it was inserted.
pub async fn insert_account_if_absent(
    conn: &mut AnyConnection,
    account: &NewAccount,
    now_ms: u64,
) -> Result<bool, SqlError> {
    let result = sqlx::query(INSERT_ACCOUNT_IF_ABSENT)
        .bind(account.account_id.as_str())
        .bind(account.user_id.as_str())
        .bind(account.opening_balance.currency().as_str().to_owned())
        .bind(account.opening_balance.minor_units())
        .bind(account.opening_balance.minor_units())
        .bind(sql_ms(now_ms))
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

fn refusal_columns(status: &ReservationStatus) -> (Option<&'static str>, Option<String>) {
    match status {
        ReservationStatus::Refused(refusal) => {
            (Some(refusal.reason.as_str()), Some(refusal.message.clone()))
        }
        _ => (None, None),
    }
}

fn reservation_from_row(row: ReservationRow) -> Result<Reservation, StoreError> {
    let (transfer_id, account_id, user_id, amount_minor, currency, status, reason, message) = row;
    let corrupt = |what: String| StoreError::Corrupt(format!("reservation {transfer_id}: {what}"));
    let terms = match (account_id, user_id, amount_minor, currency) {
        (None, None, None, None) => None,
        (Some(account_id), Some(user_id), Some(amount_minor), Some(currency)) => Some(Terms {
            account_id,
            user_id,
            amount: Money::positive(amount_minor, &currency).map_err(|e| corrupt(e.to_string()))?,
        }),
        _ => return Err(corrupt("terms are partly missing".into())),
    };
    let status = match status.as_str() {
        "held" => ReservationStatus::Held,
        "confirmed" => ReservationStatus::Confirmed,
        "cancelled" => ReservationStatus::Cancelled,
        "refused" => {
            let reason = reason
                .as_deref()
                .and_then(RefusalReason::parse)
                .ok_or_else(|| corrupt(format!("unknown refusal reason {reason:?}")))?;
            ReservationStatus::Refused(Refusal::new(reason, message.unwrap_or_default()))
        }
        other => return Err(corrupt(format!("unknown status {other:?}"))),
    };
    if terms.is_none() && status != ReservationStatus::Cancelled {
        return Err(corrupt(
            "only a cancelled reservation may lack terms".into(),
        ));
    }
    Ok(Reservation {
        transfer_id,
        terms,
        status,
    })
}

fn account_from_row(row: AccountRow) -> Result<AccountView, StoreError> {
    let (account_id, user_id, currency, available_minor, reserved_minor, confirmed_minor) = row;
    let currency = Currency::parse(&currency)
        .map_err(|e| StoreError::Corrupt(format!("account {account_id}: {e}")))?;
    let balance = Balance {
        available_minor,
        reserved_minor,
        confirmed_minor,
    };
    if available_minor < 0 || reserved_minor < 0 || confirmed_minor < 0 {
        return Err(StoreError::Corrupt(format!(
            "account {account_id}: negative balance {balance:?}"
        )));
    }
    Ok(AccountView {
        account_id,
        user_id,
        currency,
        balance,
    })
}

fn statement_from_row(row: StatementRow) -> Result<AccountStatement, StoreError> {
    let (
        account_id,
        user_id,
        currency,
        available,
        reserved,
        confirmed,
        opening,
        held_total,
        confirmed_total,
    ) = row;
    let corrupt = |what: String| StoreError::Corrupt(format!("account {account_id}: {what}"));
    if opening.is_some_and(|o| o < 0) || held_total < 0 || confirmed_total < 0 {
        return Err(corrupt(format!(
            "negative opening balance {opening:?} or reservation totals {held_total}, {confirmed_total}"
        )));
    }
    let account = account_from_row((
        account_id, user_id, currency, available, reserved, confirmed,
    ))?;
    Ok(AccountStatement {
        account_id: account.account_id,
        user_id: account.user_id,
        currency: account.currency,
        balance: account.balance,
        opening_minor: opening,
        reservations_held_minor: held_total,
        reservations_confirmed_minor: confirmed_total,
    })
}

/// Epoch milliseconds as the database stores them (BIGINT). Time is `u64` everywhere
/// else; the conversion happens here, at the SQL boundary, and only here.
pub fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).expect("epoch milliseconds fit in i64 until the year 292 million")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, reason: Option<&str>) -> ReservationRow {
        (
            "t1".into(),
            Some("acc".into()),
            Some("alice".into()),
            Some(250),
            Some("USD".into()),
            status.into(),
            reason.map(Into::into),
            reason.map(|_| "why".into()),
        )
    }

    #[test]
    fn held_rows_map_to_held_reservations_with_terms() {
        let reservation = reservation_from_row(row("held", None)).unwrap();
        assert_eq!(reservation.status, ReservationStatus::Held);
        let terms = reservation.terms.unwrap();
        assert_eq!(terms.account_id, "acc");
        assert_eq!(terms.user_id, "alice");
        assert_eq!(terms.amount, Money::positive(250, "USD").unwrap());
    }

    #[test]
    fn refused_rows_keep_their_reason_and_message() {
        let reservation = reservation_from_row(row("refused", Some("rate_limited"))).unwrap();
        assert_eq!(
            reservation.status,
            ReservationStatus::Refused(Refusal::new(RefusalReason::RateLimited, "why"))
        );
        assert_eq!(
            refusal_columns(&reservation.status),
            (Some("rate_limited"), Some("why".to_owned()))
        );
    }

    #[test]
    fn tombstones_have_no_terms_and_are_cancelled() {
        let tombstone = (
            "t1".into(),
            None,
            None,
            None,
            None,
            "cancelled".into(),
            None,
            None,
        );
        let reservation = reservation_from_row(tombstone).unwrap();
        assert_eq!(reservation.terms, None);
        assert_eq!(reservation.status, ReservationStatus::Cancelled);
        let held_without_terms = (
            "t1".into(),
            None,
            None,
            None,
            None,
            "held".into(),
            None,
            None,
        );
        assert!(matches!(
            reservation_from_row(held_without_terms),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut partial = row("held", None);
        partial.3 = None;
        for bad in [
            partial,
            row("lost", None),
            row("refused", Some("bored")),
            row("refused", None),
        ] {
            assert!(matches!(
                reservation_from_row(bad),
                Err(StoreError::Corrupt(_))
            ));
        }
        let bad_currency = ("acc".into(), "alice".into(), "usd".into(), 1, 0, 0);
        assert!(account_from_row(bad_currency).is_err());
        let negative = ("acc".into(), "alice".into(), "USD".into(), -1, 0, 0);
        assert!(account_from_row(negative).is_err());
    }

    #[test]
    fn statement_rows_keep_an_unrecorded_opening_and_refuse_negatives() {
        let row = |opening, held| {
            let row: StatementRow = (
                "acc".into(),
                "alice".into(),
                "USD".into(),
                5,
                2,
                3,
                opening,
                held,
                3,
            );
            statement_from_row(row)
        };
        let statement = row(Some(0), 2).unwrap();
        assert_eq!(statement.opening_minor, Some(0));
        assert_eq!(
            (
                statement.reservations_held_minor,
                statement.reservations_confirmed_minor
            ),
            (2, 3)
        );
        assert_eq!(statement.balance.available_minor, 5);
        assert_eq!(row(None, 2).unwrap().opening_minor, None);
        for bad in [row(Some(-1), 2), row(Some(0), -2)] {
            assert!(matches!(bad, Err(StoreError::Corrupt(_))), "{bad:?}");
        }
    }

    /// Inside a batch's transaction, each batched statement finds its rows through a
    /// primary key on PostgreSQL, even on a young table where the planner would rather
    /// read it whole (and its cached plan would keep doing so as the table grows).
    #[tokio::test]
    async fn batched_statements_use_the_primary_keys_on_postgres() {
        let Some(test_db) = testkit::db::postgres("batch_plans").await else {
            return;
        };
        let db = db::connect(&test_db.url, db::PoolSettings::default())
            .await
            .expect("connect");
        db::migrate(&db, &crate::MIGRATIONS).await.expect("migrate");
        for setup in [
            "INSERT INTO accounts SELECT 'acc-' || g, 'u' || g, 'USD', 100, 0, 0, \
             100, 0 FROM generate_series(1, 3000) AS g",
            "INSERT INTO reservations SELECT 't' || g, 'acc-' || g, 'u' || g, 1, 'USD', \
             'held', NULL, NULL, 0, 0 FROM generate_series(1, 20) AS g",
            "ANALYZE",
        ] {
            sqlx::query(setup).execute(&db.pool).await.expect(setup);
        }
        let sql = BatchSql::of(Backend::Postgres);
        let rows = r#"[{"transfer_id": "t1", "account_id": "acc-1", "status": "held",
            "available_minor": 1, "reserved_minor": 0, "confirmed_minor": 0, "at_ms": 1}]"#;
        let mut tx = db
            .pool
            .begin_with(service_kit::group_commit::POSTGRES_BATCH_BEGIN)
            .await
            .expect("begin a batch");
        for (name, statement, parameter) in [
            (
                "select reservations",
                sql.select_reservations,
                r#"["t1", "t2"]"#,
            ),
            (
                "select accounts",
                sql.select_accounts,
                r#"["acc-1", "acc-2"]"#,
            ),
            ("update reservations", sql.update_reservations, rows),
            ("update balances", sql.update_balances, rows),
        ] {
            testkit::db::assert_no_seq_scan(&mut tx, name, statement, parameter).await;
        }
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_refusal_failed() {
        for unreachable in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            assert!(matches!(
                store_error(unreachable),
                StoreError::Unavailable(_)
            ));
        }
        assert!(matches!(
            store_error(sqlx::Error::RowNotFound),
            StoreError::Failed(_)
        ));
        assert!(matches!(
            StoreError::from(SqlError::from(sqlx::Error::PoolTimedOut)),
            StoreError::Unavailable(_)
        ));
    }
}
