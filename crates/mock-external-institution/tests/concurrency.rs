//! Concurrent calls cannot overdraw an account or move money twice: holds on one account
//! serialize (row locks on PostgreSQL, one connection on SQLite), duplicate first calls
//! replay, and a racing confirm and cancel settle a hold exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use banktransfer_api::reservation::v1::{self as pb, RefusalReason, ReservationStatus};
use common::{balance, reserve_request, seed, start};
use tokio::task::JoinSet;

const OPENING_MINOR: i64 = 1_000;
const AMOUNT_MINOR: i64 = 100;
const RESERVES: usize = 24;
/// Bound on the watcher's loop; it normally stops far earlier, when the writers finish.
const SNAPSHOTS_MAX: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_hold_exactly_the_available_funds() {
    for db in testkit::db::all("ext_race").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;

        // Watches the account while the reserves race: never negative, always conserved.
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let mut client = bank.accounts.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut snapshots = 0;
                while !done.load(Ordering::SeqCst) && snapshots < SNAPSHOTS_MAX {
                    let request = banktransfer_api::external::v1::GetAccountRequest {
                        account_id: "ext-alice".into(),
                    };
                    let account = client.get_account(request).await.unwrap().into_inner();
                    let (available, reserved, confirmed) = balance(&account.account.unwrap());
                    assert!(available >= 0 && reserved >= 0 && confirmed >= 0);
                    assert_eq!(available + reserved + confirmed, OPENING_MINOR);
                    snapshots += 1;
                }
                snapshots
            })
        };

        let mut reserves = JoinSet::new();
        for i in 0..RESERVES {
            let mut client = bank.client.clone();
            reserves.spawn(async move {
                let request = reserve_request(&format!("t{i}"), "ext-alice", "alice", AMOUNT_MINOR);
                client
                    .reserve(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .reservation
                    .unwrap()
            });
        }
        let mut held = 0;
        let mut refused = 0;
        while let Some(reservation) = reserves.join_next().await {
            let reservation = reservation.unwrap();
            match reservation.status() {
                ReservationStatus::Held => held += 1,
                ReservationStatus::Refused => {
                    assert_eq!(
                        reservation.refusal_reason(),
                        RefusalReason::InsufficientFunds
                    );
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        done.store(true, Ordering::SeqCst);
        let snapshots = watcher.await.unwrap();
        assert!(snapshots > 0);

        let expected_held = usize::try_from(OPENING_MINOR / AMOUNT_MINOR).unwrap();
        assert_eq!(held, expected_held, "{:?}", bank.backend);
        assert_eq!(refused, RESERVES - expected_held);
        assert_eq!(bank.balance("ext-alice").await, (0, OPENING_MINOR, 0));
        bank.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_of_one_reserve_hold_once() {
    for db in testkit::db::all("ext_dup").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;
        let mut calls = JoinSet::new();
        for _ in 0..16 {
            let mut client = bank.client.clone();
            calls.spawn(async move {
                let request = reserve_request("t-dup", "ext-alice", "alice", AMOUNT_MINOR);
                client
                    .reserve(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .reservation
                    .unwrap()
            });
        }
        let answers: Vec<pb::Reservation> = calls.join_all().await;
        assert!(
            answers
                .iter()
                .all(|r| r.status() == ReservationStatus::Held)
        );
        assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(
            bank.balance("ext-alice").await,
            (OPENING_MINOR - AMOUNT_MINOR, AMOUNT_MINOR, 0),
            "{:?}",
            bank.backend
        );
        bank.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_racing_confirm_and_cancel_settle_each_hold_exactly_once() {
    const HOLDS: usize = 10;
    for db in testkit::db::all("ext_settle_race").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;
        for i in 0..HOLDS {
            let held = bank
                .reserve(&format!("t{i}"), "ext-alice", "alice", AMOUNT_MINOR)
                .await;
            assert_eq!(held.unwrap().status(), ReservationStatus::Held);
        }
        let mut calls = JoinSet::new();
        for i in 0..HOLDS {
            let mut confirms = bank.client.clone();
            let mut cancels = bank.client.clone();
            let transfer_id = format!("t{i}");
            calls.spawn(async move {
                let confirm = pb::ConfirmRequest {
                    transfer_id: transfer_id.clone(),
                };
                let cancel = pb::CancelRequest { transfer_id };
                let (confirmed, cancelled) =
                    tokio::join!(confirms.confirm(confirm), cancels.cancel(cancel));
                // Exactly one of the two wins; the other is refused in the new state.
                assert_ne!(
                    confirmed.is_ok(),
                    cancelled.is_ok(),
                    "{confirmed:?} {cancelled:?}"
                );
                for status in [confirmed.err(), cancelled.err()].into_iter().flatten() {
                    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                }
            });
        }
        calls.join_all().await;

        let mut confirmed_minor = 0;
        for i in 0..HOLDS {
            let reservation = bank.reservation(&format!("t{i}")).await.unwrap();
            match reservation.status() {
                ReservationStatus::Confirmed => confirmed_minor += AMOUNT_MINOR,
                ReservationStatus::Cancelled => {}
                other => panic!("t{i} left {other:?}"),
            }
        }
        assert_eq!(
            bank.balance("ext-alice").await,
            (OPENING_MINOR - confirmed_minor, 0, confirmed_minor),
            "{:?}",
            bank.backend
        );
        bank.stop().await;
    }
}
