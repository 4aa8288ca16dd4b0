//! Lone writes racing on separate connections, as two group-commit workers or two
//! replicas run them on PostgreSQL: the locks taken by the one-statement reads must
//! serialize them exactly as the row-by-row reads did. Holds on one account never
//! exceed its funds, a duplicate reserve holds once, and a confirm racing a cancel
//! settles a hold exactly once.

use banktransfer_protocol::money::Money;
use banktransfer_protocol::reservation::{
    ReservationStatus, ReserveOutcome, SettleOutcome, Side, Terms,
};
use service_kit::db::{self, PoolSettings};
use tokio::task::JoinSet;

use crate::MIGRATIONS;
use crate::book::NewAccount;
use crate::screening::NoScreening;
use crate::store::writes::{Op, Written};
use crate::store::{SqlBook, sql};

const OPENING_MINOR: i64 = 1_000;
const AMOUNT_MINOR: i64 = 100;
/// Twice what the account can hold, each reserved twice at once.
const TRANSFERS: usize = 20;

/// Runs `op` alone on a connection of its own, as `write_alone` does for a worker.
async fn alone(book: &SqlBook<NoScreening>, op: Op) -> Written {
    let mut conn = book.db.pool.acquire().await.expect("a connection");
    book.write_alone(&mut conn, &op)
        .await
        .expect("a lone write")
}

async fn balance(book: &SqlBook<NoScreening>) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT available_minor, reserved_minor, confirmed_minor FROM accounts \
         WHERE account_id = 'acc'",
    )
    .fetch_one(&book.db.pool)
    .await
    .expect("the account")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_lone_writes_hold_and_settle_exactly_once_on_postgres() {
    let Some(test_db) = testkit::db::postgres("lone_race").await else {
        return;
    };
    let settings = PoolSettings {
        connections_max: 2 * TRANSFERS as u32,
        ..PoolSettings::default()
    };
    let db = db::connect(&test_db.url, settings).await.expect("connect");
    db::migrate(&db, &MIGRATIONS).await.expect("migrate");
    let book = SqlBook {
        db,
        side: Side::Debit,
        screening: NoScreening,
    };
    let mut conn = book.db.pool.acquire().await.expect("a connection");
    let account = NewAccount {
        account_id: "acc".to_owned(),
        user_id: "ann".to_owned(),
        opening_balance: Money::non_negative(OPENING_MINOR, "USD").expect("an opening balance"),
    };
    sql::insert_account_if_absent(&mut conn, &account, 0)
        .await
        .expect("open the account");
    drop(conn);

    // Every transfer reserved twice at once.
    let mut reserves = JoinSet::new();
    for copy in 0..2 {
        for index in 0..TRANSFERS {
            let book = book.clone();
            reserves.spawn(async move {
                let op = Op::Reserve {
                    transfer_id: format!("t{index}"),
                    terms: Terms {
                        account_id: "acc".to_owned(),
                        user_id: "ann".to_owned(),
                        amount: Money::positive(AMOUNT_MINOR, "USD").expect("an amount"),
                    },
                    now_ms: 1 + copy,
                };
                (index, alone(&book, op).await)
            });
        }
    }
    let mut held = vec![None; TRANSFERS];
    while let Some(joined) = reserves.join_next().await {
        let (index, written) = joined.expect("a reserve task");
        let Written::Reserve(outcome) = written else {
            panic!("a reserve answers a reserve: {written:?}");
        };
        let reservation = match outcome {
            ReserveOutcome::Record { reservation, .. } | ReserveOutcome::Replay(reservation) => {
                reservation
            }
            ReserveOutcome::Conflict(why) => panic!("same terms, no conflict: {why}"),
        };
        let is_held = reservation.status == ReservationStatus::Held;
        assert!(
            held[index].is_none_or(|before| before == is_held),
            "both copies of t{index} answer the same: {reservation:?}"
        );
        held[index] = Some(is_held);
    }
    let holds = held.iter().filter(|h| **h == Some(true)).count();
    assert_eq!(
        holds as i64,
        OPENING_MINOR / AMOUNT_MINOR,
        "exactly what the account can hold is held: {held:?}"
    );
    assert_eq!(balance(&book).await, (0, OPENING_MINOR, 0));

    // Every hold confirmed and cancelled at once: one of the two wins.
    let mut settles = JoinSet::new();
    for (index, _) in held.iter().enumerate().filter(|(_, h)| **h == Some(true)) {
        for confirm in [true, false] {
            let book = book.clone();
            settles.spawn(async move {
                let transfer_id = format!("t{index}");
                let op = if confirm {
                    Op::Confirm {
                        transfer_id,
                        now_ms: 10,
                    }
                } else {
                    Op::Cancel {
                        transfer_id,
                        now_ms: 10,
                    }
                };
                (index, alone(&book, op).await)
            });
        }
    }
    let mut applied = vec![0; TRANSFERS];
    while let Some(joined) = settles.join_next().await {
        let (index, written) = joined.expect("a settle task");
        match written {
            Written::Settle(SettleOutcome::Apply { .. }) => applied[index] += 1,
            Written::Settle(SettleOutcome::Reject(_) | SettleOutcome::Replay(_)) => {}
            other => panic!("t{index}: a hold is confirmed, cancelled or refused: {other:?}"),
        }
    }
    assert!(
        applied
            .iter()
            .zip(&held)
            .all(|(applied, held)| *applied == usize::from(*held == Some(true))),
        "each hold settled exactly once: {applied:?}"
    );
    let (confirmed,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM reservations \
         WHERE status = 'confirmed'",
    )
    .fetch_one(&book.db.pool)
    .await
    .expect("the confirmed total");
    assert_eq!(
        balance(&book).await,
        (OPENING_MINOR - confirmed, 0, confirmed),
        "every cent is available again or confirmed"
    );
}
