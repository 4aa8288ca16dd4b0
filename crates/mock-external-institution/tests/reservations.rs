//! The debit side of the reservation protocol through the API: holds take funds out of
//! `available`, confirms move them out for good, cancels give them back; every call
//! replays; refusals are answers; misuse gets the documented status codes.

mod common;

use banktransfer_api::reservation::v1::{RefusalReason, ReservationStatus};
use common::{Institution, expect_code, seed, start};
use tonic::Code;

async fn bank_with_alice(db: &testkit::db::TestDatabase) -> Institution {
    start(
        db,
        vec![
            seed("ext-alice", "alice", 1_000),
            seed("ext-bob", "bob", 1_000),
        ],
    )
    .await
}

#[tokio::test]
async fn reserve_then_confirm_moves_funds_out_once() {
    for db in testkit::db::all("ext_confirm").await {
        let mut bank = bank_with_alice(&db).await;
        let held = bank.reserve("t1", "ext-alice", "alice", 300).await.unwrap();
        assert_eq!(held.status(), ReservationStatus::Held, "{:?}", bank.backend);
        assert_eq!(held.transfer_id, "t1");
        assert_eq!(held.account_id, "ext-alice");
        assert_eq!(held.user_id, "alice");
        assert_eq!(held.amount.as_ref().unwrap().minor_units, 300);
        assert_eq!(bank.balance("ext-alice").await, (700, 300, 0));

        // A replayed reserve answers the same and holds nothing more.
        assert_eq!(
            bank.reserve("t1", "ext-alice", "alice", 300).await.unwrap(),
            held
        );
        assert_eq!(bank.balance("ext-alice").await, (700, 300, 0));

        let confirmed = bank.confirm("t1").await.unwrap();
        assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
        assert_eq!(bank.balance("ext-alice").await, (700, 0, 300));

        // Replays after the confirm: same answer, nothing moves twice.
        assert_eq!(bank.confirm("t1").await.unwrap(), confirmed);
        assert_eq!(
            bank.reserve("t1", "ext-alice", "alice", 300).await.unwrap(),
            confirmed
        );
        assert_eq!(bank.reservation("t1").await.unwrap(), confirmed);
        assert_eq!(bank.balance("ext-alice").await, (700, 0, 300));

        let status = expect_code(bank.cancel("t1").await, Code::FailedPrecondition);
        assert!(status.message().contains("confirmed"), "{status:?}");
        assert_eq!(bank.balance("ext-alice").await, (700, 0, 300));
        bank.stop().await;
    }
}

#[tokio::test]
async fn reserve_then_cancel_gives_the_funds_back_once() {
    for db in testkit::db::all("ext_cancel").await {
        let mut bank = bank_with_alice(&db).await;
        bank.reserve("t1", "ext-alice", "alice", 400).await.unwrap();
        assert_eq!(bank.balance("ext-alice").await, (600, 400, 0));

        let cancelled = bank.cancel("t1").await.unwrap();
        assert_eq!(
            cancelled.status(),
            ReservationStatus::Cancelled,
            "{:?}",
            bank.backend
        );
        assert_eq!(cancelled.amount.as_ref().unwrap().minor_units, 400);
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));

        assert_eq!(bank.cancel("t1").await.unwrap(), cancelled);
        assert_eq!(
            bank.reserve("t1", "ext-alice", "alice", 400).await.unwrap(),
            cancelled
        );
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));

        let status = expect_code(bank.confirm("t1").await, Code::FailedPrecondition);
        assert!(status.message().contains("cancelled"), "{status:?}");
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn a_transfer_id_reused_with_other_terms_is_already_exists() {
    for db in testkit::db::all("ext_conflict").await {
        let mut bank = bank_with_alice(&db).await;
        let held = bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
        for (account_id, user_id, amount) in [
            ("ext-alice", "alice", 200),
            ("ext-bob", "bob", 100),
            ("ext-alice", "bob", 100),
        ] {
            let status = expect_code(
                bank.reserve("t1", account_id, user_id, amount).await,
                Code::AlreadyExists,
            );
            assert!(status.message().contains("t1"), "{status:?}");
        }
        assert_eq!(bank.reservation("t1").await.unwrap(), held);
        assert_eq!(
            bank.balance("ext-alice").await,
            (900, 100, 0),
            "{:?}",
            bank.backend
        );
        assert_eq!(bank.balance("ext-bob").await, (1_000, 0, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn a_cancel_before_the_reserve_leaves_a_tombstone_that_refuses_it() {
    for db in testkit::db::all("ext_tombstone").await {
        let mut bank = bank_with_alice(&db).await;
        let tombstone = bank.cancel("t-late").await.unwrap();
        assert_eq!(
            tombstone.status(),
            ReservationStatus::Cancelled,
            "{:?}",
            bank.backend
        );
        assert!(tombstone.account_id.is_empty() && tombstone.amount.is_none());

        // The reserve arrives after the coordinator gave up: it must hold nothing.
        let late = bank
            .reserve("t-late", "ext-alice", "alice", 500)
            .await
            .unwrap();
        assert_eq!(late, tombstone);
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));
        assert_eq!(bank.reservation("t-late").await.unwrap(), tombstone);
        assert_eq!(bank.cancel("t-late").await.unwrap(), tombstone);
        expect_code(bank.confirm("t-late").await, Code::FailedPrecondition);
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn refusals_are_recorded_answers_that_hold_nothing() {
    for db in testkit::db::all("ext_refusals").await {
        let mut bank = bank_with_alice(&db).await;
        bank.open("ext-alice-eur", "alice", 1_000, "EUR")
            .await
            .unwrap();
        let cases = [
            (
                "t-funds",
                "ext-alice",
                "alice",
                1_001,
                RefusalReason::InsufficientFunds,
            ),
            (
                "t-missing",
                "ext-nobody",
                "alice",
                10,
                RefusalReason::AccountNotFound,
            ),
            (
                "t-owner",
                "ext-bob",
                "alice",
                10,
                RefusalReason::AccountNotOwned,
            ),
            (
                "t-currency",
                "ext-alice-eur",
                "alice",
                10,
                RefusalReason::CurrencyMismatch,
            ),
        ];
        for (transfer_id, account_id, user_id, amount, reason) in cases {
            let refused = bank
                .reserve(transfer_id, account_id, user_id, amount)
                .await
                .unwrap();
            assert_eq!(
                refused.status(),
                ReservationStatus::Refused,
                "{transfer_id}"
            );
            assert_eq!(refused.refusal_reason(), reason, "{transfer_id}");
            assert!(!refused.refusal_message.is_empty());

            // Replays answer the same refusal; confirm is refused; cancel changes nothing.
            let replay = bank
                .reserve(transfer_id, account_id, user_id, amount)
                .await
                .unwrap();
            assert_eq!(replay, refused);
            expect_code(bank.confirm(transfer_id).await, Code::FailedPrecondition);
            assert_eq!(bank.cancel(transfer_id).await.unwrap(), refused);
        }
        assert_eq!(
            bank.balance("ext-alice").await,
            (1_000, 0, 0),
            "{:?}",
            bank.backend
        );
        assert_eq!(bank.balance("ext-bob").await, (1_000, 0, 0));
        assert_eq!(bank.balance("ext-alice-eur").await, (1_000, 0, 0));

        // Exactly the available funds can still be held.
        let all_in = bank
            .reserve("t-all", "ext-alice", "alice", 1_000)
            .await
            .unwrap();
        assert_eq!(all_in.status(), ReservationStatus::Held);
        assert_eq!(bank.balance("ext-alice").await, (0, 1_000, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn unknown_transfers_are_not_found_to_read_and_cannot_be_confirmed() {
    for db in testkit::db::all("ext_unknown").await {
        let mut bank = bank_with_alice(&db).await;
        expect_code(bank.reservation("t-never").await, Code::NotFound);
        let status = expect_code(bank.confirm("t-never").await, Code::FailedPrecondition);
        assert!(status.message().contains("reserve"), "{status:?}");
        // The refused confirm recorded nothing: the id is still free.
        expect_code(bank.reservation("t-never").await, Code::NotFound);
        bank.stop().await;
    }
}

#[tokio::test]
async fn invalid_reservation_requests_are_invalid_argument() {
    for db in testkit::db::all("ext_invalid").await {
        let mut bank = bank_with_alice(&db).await;
        let long_id = "t".repeat(129);
        let cases = [
            ("", "ext-alice", "alice", 1, "transfer_id"),
            (long_id.as_str(), "ext-alice", "alice", 1, "transfer_id"),
            ("t1", "", "alice", 1, "account_id"),
            ("t1", "ext-alice", "", 1, "user_id"),
            ("t1", "ext-alice", "alice", 0, "amount.minor_units"),
            ("t1", "ext-alice", "alice", -5, "amount.minor_units"),
        ];
        for (transfer_id, account_id, user_id, amount, field) in cases {
            let status = expect_code(
                bank.reserve(transfer_id, account_id, user_id, amount).await,
                Code::InvalidArgument,
            );
            assert!(status.message().contains(field), "{status:?} lacks {field}");
        }
        let mut bad_currency = common::reserve_request("t1", "ext-alice", "alice", 1);
        bad_currency.amount = Some(common::usd_like(1, "dollars"));
        let status = expect_code(
            bank.client.reserve(bad_currency).await,
            Code::InvalidArgument,
        );
        assert!(status.message().contains("amount.currency"), "{status:?}");
        let mut no_amount = common::reserve_request("t1", "ext-alice", "alice", 1);
        no_amount.amount = None;
        let status = expect_code(bank.client.reserve(no_amount).await, Code::InvalidArgument);
        assert!(status.message().contains("amount is missing"), "{status:?}");

        expect_code(bank.confirm("").await, Code::InvalidArgument);
        expect_code(bank.cancel("").await, Code::InvalidArgument);
        expect_code(bank.reservation("").await, Code::InvalidArgument);
        // None of them recorded anything.
        expect_code(bank.reservation("t1").await, Code::NotFound);
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));
        bank.stop().await;
    }
}
