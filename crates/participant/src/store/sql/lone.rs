//! A lone write's reads and writes in as few round trips as its back end allows.
//!
//! At low load most writes run alone, each in a transaction of its own, and on PostgreSQL
//! each statement is a round trip to another process: a reserve took seven (BEGIN, the
//! reservation, the account, the screening's counts, the new reservation, the balance,
//! COMMIT) and a confirm six, on the client's path twice per transfer. Here PostgreSQL
//! reads what the decision needs with one statement and writes what it decided with
//! one (a data-modifying CTE), so a reserve takes four or five and a confirm four. The
//! decision itself stays in `reservation::reserve`, `confirm` and `cancel`, as before.
//! SQLite runs in the process (a statement is a function call, not a round trip) and has
//! no data-modifying CTE: it keeps the one-statement-per-row functions of `sql`.
//!
//! Locks are taken in the order every write takes them (the batch's too): the
//! reservation, then its account.

use banktransfer_protocol::reservation::{AccountView, Balance, Reservation};
use service_kit::db::Backend;
use sqlx::AnyConnection;

use super::{
    AccountRow, SqlError, account_from_row, refusal_columns, reservation_from_row, sql_ms,
};
use crate::book::StoreError;

/// A reserve's read: the reservation (not locked: if it exists the reserve only replays
/// it and writes nothing; a concurrent insert of the same id makes this one's insert a
/// unique violation, which re-reads) and the account, locked.
const SELECT_FOR_RESERVE_POSTGRES: &str = "SELECT r.transfer_id, r.account_id, r.user_id, r.amount_minor, r.currency, r.status, \
     r.refusal_reason, r.refusal_message, a.account_id, a.user_id, a.currency, \
     a.available_minor, a.reserved_minor, a.confirmed_minor \
     FROM (SELECT 1) AS one \
     LEFT JOIN reservations AS r ON r.transfer_id = $1 \
     LEFT JOIN LATERAL (SELECT account_id, user_id, currency, available_minor, \
     reserved_minor, confirmed_minor FROM accounts WHERE account_id = $2 FOR UPDATE) AS a \
     ON true";

/// A confirm's or cancel's read: the reservation, locked, then its account, locked (the
/// account's subquery depends on the reservation's row, so it runs second).
const SELECT_FOR_SETTLE_POSTGRES: &str = concat!(
    "SELECT r.transfer_id, r.account_id, r.user_id, r.amount_minor, r.currency, r.status, \
     r.refusal_reason, r.refusal_message, a.account_id, a.user_id, a.currency, \
     a.available_minor, a.reserved_minor, a.confirmed_minor \
     FROM (",
    select_reservation!(),
    " FOR UPDATE) AS r \
     LEFT JOIN LATERAL (SELECT account_id, user_id, currency, available_minor, \
     reserved_minor, confirmed_minor FROM accounts WHERE account_id = r.account_id \
     FOR UPDATE) AS a ON true"
);

/// A new reservation and its account's new balance in one statement; answers the
/// reservations inserted (one), or no row if the account is missing, which its lock
/// in this transaction rules out.
const RECORD_WITH_BALANCE_POSTGRES: &str = "WITH inserted AS (INSERT INTO reservations \
     (transfer_id, account_id, user_id, amount_minor, currency, status, refusal_reason, \
     refusal_message, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING 1) \
     UPDATE accounts SET available_minor = $10, reserved_minor = $11, confirmed_minor = $12 \
     WHERE account_id = $2 RETURNING (SELECT COUNT(*) FROM inserted)";

/// A reservation's new status and its account's new balance in one statement; answers
/// the reservations updated (one), or no row if the account is missing.
const APPLY_WITH_BALANCE_POSTGRES: &str = "WITH settled AS (UPDATE reservations \
     SET status = $2, refusal_reason = $3, refusal_message = $4, updated_at_ms = $5 \
     WHERE transfer_id = $1 RETURNING 1) \
     UPDATE accounts SET available_minor = $7, reserved_minor = $8, confirmed_minor = $9 \
     WHERE account_id = $6 RETURNING (SELECT COUNT(*) FROM settled)";

/// A [`ReservationRow`] whose every column may be NULL (no reservation), then an
/// [`AccountRow`] whose every column may be NULL (no account).
type JoinedRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn from_joined(row: JoinedRow) -> Result<(Option<Reservation>, Option<AccountView>), StoreError> {
    let (
        transfer_id,
        reserved_account_id,
        reserving_user_id,
        amount_minor,
        reserved_currency,
        status,
        reason,
        message,
        account_id,
        user_id,
        currency,
        available_minor,
        reserved_minor,
        confirmed_minor,
    ) = row;
    let reservation = match (transfer_id, status) {
        (None, None) => None,
        (Some(transfer_id), Some(status)) => Some(reservation_from_row((
            transfer_id,
            reserved_account_id,
            reserving_user_id,
            amount_minor,
            reserved_currency,
            status,
            reason,
            message,
        ))?),
        (transfer_id, status) => {
            return Err(StoreError::Corrupt(format!(
                "reservation {transfer_id:?} with status {status:?}"
            )));
        }
    };
    let account = match (
        account_id,
        user_id,
        currency,
        available_minor,
        reserved_minor,
        confirmed_minor,
    ) {
        (None, None, None, None, None, None) => None,
        (
            Some(id),
            Some(user),
            Some(currency),
            Some(available),
            Some(reserved),
            Some(confirmed),
        ) => {
            let row: AccountRow = (id, user, currency, available, reserved, confirmed);
            Some(account_from_row(row)?)
        }
        (account_id, ..) => {
            return Err(StoreError::Corrupt(format!(
                "account {account_id:?} with a NULL column"
            )));
        }
    };
    Ok((reservation, account))
}

/// What a reserve decides on: the reservation of `transfer_id` as recorded, and the
/// account `account_id`, locked until the transaction ends on PostgreSQL.
pub async fn select_for_reserve(
    conn: &mut AnyConnection,
    backend: Backend,
    transfer_id: &str,
    account_id: &str,
) -> Result<(Option<Reservation>, Option<AccountView>), SqlError> {
    match backend {
        Backend::Postgres => {
            let row: JoinedRow = sqlx::query_as(SELECT_FOR_RESERVE_POSTGRES)
                .bind(transfer_id)
                .bind(account_id)
                .fetch_one(&mut *conn)
                .await?;
            Ok(from_joined(row)?)
        }
        Backend::Sqlite => Ok((
            super::select_reservation(conn, transfer_id).await?,
            super::select_account(conn, account_id).await?,
        )),
    }
}

/// What a confirm or cancel decides on: the reservation of `transfer_id`, and its
/// account if it has terms, both locked until the transaction ends on PostgreSQL.
pub async fn select_for_settle(
    conn: &mut AnyConnection,
    backend: Backend,
    transfer_id: &str,
) -> Result<(Option<Reservation>, Option<AccountView>), SqlError> {
    match backend {
        Backend::Postgres => {
            let row: Option<JoinedRow> = sqlx::query_as(SELECT_FOR_SETTLE_POSTGRES)
                .bind(transfer_id)
                .fetch_optional(&mut *conn)
                .await?;
            match row {
                Some(row) => Ok(from_joined(row)?),
                None => Ok((None, None)),
            }
        }
        Backend::Sqlite => {
            let reservation = super::select_reservation(conn, transfer_id).await?;
            let account = match reservation.as_ref().and_then(|r| r.terms.as_ref()) {
                Some(terms) => super::select_account(conn, &terms.account_id).await?,
                None => None,
            };
            Ok((reservation, account))
        }
    }
}

/// Records a new reservation and, if it moves money, its account's new balance. A unique
/// violation means a concurrent call recorded the same transfer id first: the caller
/// re-reads and replays.
pub async fn record(
    conn: &mut AnyConnection,
    backend: Backend,
    reservation: &Reservation,
    balance: Option<Balance>,
    now_ms: u64,
) -> Result<(), SqlError> {
    // A refusal or a tombstone moves no money: the reservation alone.
    let (Some(balance), Some(terms)) = (balance, reservation.terms.as_ref()) else {
        return super::insert_reservation(conn, reservation, now_ms).await;
    };
    if backend == Backend::Sqlite {
        super::insert_reservation(conn, reservation, now_ms).await?;
        return super::update_balance(conn, &terms.account_id, balance).await;
    }
    let (reason, message) = refusal_columns(&reservation.status);
    let inserted: Option<(i64,)> = sqlx::query_as(RECORD_WITH_BALANCE_POSTGRES)
        .bind(reservation.transfer_id.as_str())
        .bind(terms.account_id.as_str())
        .bind(terms.user_id.as_str())
        .bind(terms.amount.minor_units())
        .bind(terms.amount.currency().as_str().to_owned())
        .bind(reservation.status.as_str())
        .bind(reason)
        .bind(message)
        .bind(sql_ms(now_ms))
        .bind(balance.available_minor)
        .bind(balance.reserved_minor)
        .bind(balance.confirmed_minor)
        .fetch_optional(&mut *conn)
        .await?;
    assert_eq!(
        inserted,
        Some((1,)),
        "recording reservation {} must insert it and change its account's balance",
        reservation.transfer_id
    );
    Ok(())
}

/// Records a reservation's new status and its account's new balance. Both rows were
/// read (and locked) in this transaction, so exactly one of each changes; anything else
/// would lose or create money.
pub async fn apply(
    conn: &mut AnyConnection,
    backend: Backend,
    reservation: &Reservation,
    account_id: &str,
    balance: Balance,
    now_ms: u64,
) -> Result<(), SqlError> {
    if backend == Backend::Sqlite {
        super::update_reservation_status(conn, reservation, now_ms).await?;
        return super::update_balance(conn, account_id, balance).await;
    }
    let (reason, message) = refusal_columns(&reservation.status);
    let settled: Option<(i64,)> = sqlx::query_as(APPLY_WITH_BALANCE_POSTGRES)
        .bind(reservation.transfer_id.as_str())
        .bind(reservation.status.as_str())
        .bind(reason)
        .bind(message)
        .bind(sql_ms(now_ms))
        .bind(account_id)
        .bind(balance.available_minor)
        .bind(balance.reserved_minor)
        .bind(balance.confirmed_minor)
        .fetch_optional(&mut *conn)
        .await?;
    assert_eq!(
        settled,
        Some((1,)),
        "settling reservation {} must change it and its account's balance",
        reservation.transfer_id
    );
    Ok(())
}

#[cfg(test)]
mod tests;
