//! The batched path against the reference: the same operations, run one after another in
//! transactions of their own (`write_alone`) on one database, and in batches
//! (`write_many`) on another, must give the same outcomes and leave the same rows.
//! Few transfer ids, users and accounts, so batches hold replays, conflicting terms,
//! cancels racing reserves, tombstones, refusals and segment cuts.

use banktransfer_protocol::money::Money;
use banktransfer_protocol::reservation::{RefusalReason, Side};
use service_kit::db::{self, Db, PoolSettings};

use testkit::rng::SimRng;

use super::*;
use crate::screening::Verdict;
use crate::{MIGRATIONS, NewAccount};

/// Reads the book as the balance store's screening does (reservations by user in a
/// trailing window, credits held or confirmed to an account), and refuses past small
/// limits, so that which reservations a screening sees changes its verdict.
#[derive(Clone, Debug)]
struct CountingScreening;

const WINDOW_MS: i64 = 10;
const RESERVES_PER_WINDOW_MAX: i64 = 2;
const INBOUND_MAX_MINOR: i64 = 60;

impl Screening for CountingScreening {
    async fn screen(&self, conn: &mut AnyConnection, terms: &Terms, now_ms: u64) -> Verdict {
        let since = super::super::sql_ms(now_ms) - WINDOW_MS;
        let (by_user,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM reservations WHERE user_id = $1 AND created_at_ms > $2",
        )
        .bind(terms.user_id.as_str())
        .bind(since)
        .fetch_one(&mut *conn)
        .await?;
        let (inbound,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM reservations \
             WHERE account_id = $1 AND status IN ('held', 'confirmed')",
        )
        .bind(terms.account_id.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Ok(if by_user >= RESERVES_PER_WINDOW_MAX {
            Err(reservation::Refusal::new(
                RefusalReason::RateLimited,
                format!("{by_user} reserves"),
            ))
        } else if inbound + terms.amount.minor_units() > INBOUND_MAX_MINOR {
            Err(reservation::Refusal::new(
                RefusalReason::LimitExceeded,
                format!("{inbound} inbound"),
            ))
        } else {
            Ok(())
        })
    }
}

const USERS: [&str; 3] = ["ann", "bob", "cy"];

fn operations(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = SimRng::new(seed);
    let mut now_ms = 1_000;
    (0..count)
        .map(|index| {
            now_ms += rng.below(2);
            // Ids repeat among neighbours (replays, races) and new ones keep coming.
            let transfer_id = format!("t{}", index / 3 + rng.below(6) as usize);
            match rng.below(10) {
                0..=4 => {
                    let user = USERS[rng.below(3) as usize];
                    // Mostly the user's own account; sometimes another's, or none.
                    let account_id = match rng.below(8) {
                        0 => "acc-nobody".to_owned(),
                        1 => format!("acc-{}", USERS[rng.below(3) as usize]),
                        _ => format!("acc-{user}"),
                    };
                    let currency = if rng.below(12) == 0 { "EUR" } else { "USD" };
                    Op::Reserve {
                        transfer_id,
                        terms: Terms {
                            account_id,
                            user_id: user.to_owned(),
                            amount: Money::positive(1 + rng.below(25) as i64, currency)
                                .expect("a positive amount"),
                        },
                        now_ms,
                    }
                }
                5..=7 => Op::Confirm {
                    transfer_id,
                    now_ms,
                },
                _ => Op::Cancel {
                    transfer_id,
                    now_ms,
                },
            }
        })
        .collect()
}

async fn open_book(url: &str, side: Side) -> SqlBook<CountingScreening> {
    let db: Db = db::connect(url, PoolSettings::default())
        .await
        .expect("connect");
    db::migrate(&db, &MIGRATIONS).await.expect("migrate");
    let book = SqlBook {
        db,
        side,
        screening: CountingScreening,
    };
    for user in USERS {
        let account = NewAccount {
            account_id: format!("acc-{user}"),
            user_id: user.to_owned(),
            opening_balance: Money::non_negative(40, "USD").expect("an opening balance"),
        };
        let mut conn = book.db.pool.acquire().await.expect("a connection");
        super::super::sql::insert_account_if_absent(&mut conn, &account, 0)
            .await
            .expect("open an account");
    }
    book
}

type Rows = Vec<(
    String,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
    i64,
    i64,
)>;

/// Every row of both tables that the operations can change.
async fn rows(db: &Db) -> (Rows, Vec<(String, i64, i64, i64)>) {
    let reservations: Rows = sqlx::query_as(
        "SELECT transfer_id, account_id, amount_minor, status, refusal_message, \
         created_at_ms, updated_at_ms FROM reservations ORDER BY transfer_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read reservations");
    let accounts = sqlx::query_as(
        "SELECT account_id, available_minor, reserved_minor, confirmed_minor FROM accounts \
         ORDER BY account_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read accounts");
    (reservations, accounts)
}

#[tokio::test]
async fn batches_write_what_one_at_a_time_writes() {
    for side in [Side::Debit, Side::Credit] {
        for seed in 1..=6_u64 {
            let name = format!("batch_{side:?}_{seed}");
            let mut databases = vec![(
                testkit::db::sqlite(&format!("{name}_alone")),
                testkit::db::sqlite(&format!("{name}_batched")),
            )];
            if let (Some(alone), Some(batched)) = (
                testkit::db::postgres(&format!("{name}_alone")).await,
                testkit::db::postgres(&format!("{name}_batched")).await,
            ) {
                databases.push((alone, batched));
            }
            for (alone_db, batched_db) in databases {
                let alone = open_book(&alone_db.url, side).await;
                let batched = open_book(&batched_db.url, side).await;
                let ops = operations(seed, 160);

                let mut expected = Vec::new();
                let mut conn = alone.db.pool.acquire().await.expect("a connection");
                for op in &ops {
                    expected.push(
                        alone
                            .write_alone(&mut conn, op)
                            .await
                            .expect("a write alone"),
                    );
                }
                drop(conn);

                let mut rng = SimRng::new(seed ^ 0xBA7C);
                let mut got = Vec::new();
                let mut rest: &[Op] = &ops;
                while !rest.is_empty() {
                    let take = (1 + rng.below(16) as usize).min(rest.len());
                    let (batch, after) = rest.split_at(take);
                    let batch: Vec<&Op> = batch.iter().collect();
                    let mut tx = batched.db.pool.begin().await.expect("begin");
                    got.extend(batched.write_many(&mut tx, &batch).await.expect("a batch"));
                    tx.commit().await.expect("commit");
                    rest = after;
                }

                let context = format!("{side:?}, seed {seed}, {:?}", alone_db.backend);
                assert_eq!(got.len(), expected.len(), "{context}");
                for (index, (got, expected)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        got, expected,
                        "operation {index}: {:?}; {context}",
                        ops[index]
                    );
                }
                assert_eq!(rows(&batched.db).await, rows(&alone.db).await, "{context}");
                assert_covers_every_case(&expected, &context);
            }
        }
    }
}

/// The cases a batch must get right all occurred, so that agreement means something.
fn assert_covers_every_case(outcomes: &[Written], context: &str) {
    let refused = |reason: RefusalReason| {
        outcomes.iter().any(|w| {
            matches!(w, Written::Reserve(ReserveOutcome::Record { reservation, .. })
                if matches!(&reservation.status,
                    reservation::ReservationStatus::Refused(r) if r.reason == reason))
        })
    };
    let cases = [
        (
            "a hold",
            outcomes.iter().any(|w| {
                matches!(
                    w,
                    Written::Reserve(ReserveOutcome::Record {
                        balance: Some(_),
                        ..
                    })
                )
            }),
        ),
        ("a screening refusal", refused(RefusalReason::RateLimited)),
        (
            "a reserve replayed",
            outcomes
                .iter()
                .any(|w| matches!(w, Written::Reserve(ReserveOutcome::Replay(_)))),
        ),
        (
            "a conflict",
            outcomes
                .iter()
                .any(|w| matches!(w, Written::Reserve(ReserveOutcome::Conflict(_)))),
        ),
        (
            "a confirm or cancel applied",
            outcomes
                .iter()
                .any(|w| matches!(w, Written::Settle(SettleOutcome::Apply { .. }))),
        ),
        (
            "a tombstone",
            outcomes
                .iter()
                .any(|w| matches!(w, Written::Settle(SettleOutcome::Record(_)))),
        ),
        (
            "a rejection",
            outcomes
                .iter()
                .any(|w| matches!(w, Written::Settle(SettleOutcome::Reject(_)))),
        ),
    ];
    for (case, seen) in cases {
        assert!(seen, "no {case} among the operations; {context}");
    }
}

#[test]
fn a_segment_ends_before_a_repeated_transfer_or_a_screened_reserve_on_a_touched_user() {
    let usd = |minor| Money::positive(minor, "USD").expect("an amount");
    let reserve = |transfer: &str, user: &str| Op::Reserve {
        transfer_id: transfer.to_owned(),
        terms: Terms {
            account_id: format!("acc-{user}"),
            user_id: user.to_owned(),
            amount: usd(1),
        },
        now_ms: 1,
    };
    let confirm = |transfer: &str| Op::Confirm {
        transfer_id: transfer.to_owned(),
        now_ms: 1,
    };
    let none = HashMap::new();
    let (a, b, a_again) = (
        reserve("t1", "ann"),
        reserve("t2", "bob"),
        reserve("t3", "ann"),
    );
    assert_eq!(segment_len(&[&a, &b], &none), 2);
    assert_eq!(segment_len(&[&a, &b, &a_again], &none), 2, "same user");
    assert_eq!(
        segment_len(&[&a, &confirm("t1")], &none),
        1,
        "same transfer"
    );

    // A reserve that replays a recorded reservation is not screened: no cut.
    let recorded: HashMap<String, Reservation> = [(
        "t3".to_owned(),
        Reservation {
            transfer_id: "t3".into(),
            terms: Some(Terms {
                account_id: "acc-ann".into(),
                user_id: "ann".into(),
                amount: usd(1),
            }),
            status: reservation::ReservationStatus::Held,
        },
    )]
    .into();
    assert_eq!(segment_len(&[&a, &a_again], &recorded), 2);
    // A confirm touches its recorded reservation's account: a later new reserve to it
    // must not be screened against the book before that confirm.
    assert_eq!(
        segment_len(&[&confirm("t3"), &reserve("t4", "ann")], &recorded),
        1
    );
}
