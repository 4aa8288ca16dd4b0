//! The credit side of the reservation protocol through the API: a hold is a pending
//! credit, a confirm makes it available, a cancel drops it; accounts open idempotently;
//! every call replays; misuse gets the documented status codes.

mod common;

use banktransfer_api::reservation::v1::{RefusalReason, ReservationStatus};
use common::{expect_code, start};
use internal_balance_store::rules::Rules;
use tonic::Code;

#[tokio::test]
async fn accounts_open_idempotently_and_conflicting_reopens_are_already_exists() {
    for db in testkit::db::all("balance_store_accounts").await {
        let mut balance_store = start(&db, Rules::default()).await;
        let alice = balance_store.account("int-alice").await.unwrap();
        assert_eq!(
            (alice.user_id.as_str(), alice.currency.as_str()),
            ("alice", "USD")
        );
        assert_eq!(
            balance_store.balance("int-alice").await,
            (0, 0, 0),
            "{:?}",
            balance_store.backend
        );

        let carol = balance_store
            .open("int-carol", "carol", 250, "USD")
            .await
            .unwrap();
        assert_eq!(carol.available_minor_units, 250);
        assert_eq!(
            balance_store
                .open("int-carol", "carol", 0, "USD")
                .await
                .unwrap(),
            carol
        );
        expect_code(
            balance_store.open("int-carol", "dave", 0, "USD").await,
            Code::AlreadyExists,
        );
        expect_code(
            balance_store.open("int-carol", "carol", 0, "EUR").await,
            Code::AlreadyExists,
        );
        expect_code(
            balance_store.open("", "carol", 0, "USD").await,
            Code::InvalidArgument,
        );
        expect_code(balance_store.account("int-nobody").await, Code::NotFound);
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn a_confirmed_credit_becomes_available_once() {
    for db in testkit::db::all("balance_store_confirm").await {
        let mut balance_store = start(&db, Rules::default()).await;
        let held = balance_store
            .reserve("t1", "int-alice", "alice", 300)
            .await
            .unwrap();
        assert_eq!(
            held.status(),
            ReservationStatus::Held,
            "{:?}",
            balance_store.backend
        );
        // Pending, not spendable yet.
        assert_eq!(balance_store.balance("int-alice").await, (0, 300, 0));
        assert_eq!(
            balance_store
                .reserve("t1", "int-alice", "alice", 300)
                .await
                .unwrap(),
            held
        );
        assert_eq!(balance_store.balance("int-alice").await, (0, 300, 0));

        let confirmed = balance_store.confirm("t1").await.unwrap();
        assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
        assert_eq!(balance_store.balance("int-alice").await, (300, 0, 300));
        assert_eq!(balance_store.confirm("t1").await.unwrap(), confirmed);
        assert_eq!(
            balance_store
                .reserve("t1", "int-alice", "alice", 300)
                .await
                .unwrap(),
            confirmed
        );
        assert_eq!(balance_store.balance("int-alice").await, (300, 0, 300));

        expect_code(balance_store.cancel("t1").await, Code::FailedPrecondition);
        assert_eq!(balance_store.balance("int-alice").await, (300, 0, 300));
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn a_cancelled_credit_is_dropped_once() {
    for db in testkit::db::all("balance_store_cancel").await {
        let mut balance_store = start(&db, Rules::default()).await;
        balance_store
            .reserve("t1", "int-alice", "alice", 300)
            .await
            .unwrap();
        let cancelled = balance_store.cancel("t1").await.unwrap();
        assert_eq!(
            cancelled.status(),
            ReservationStatus::Cancelled,
            "{:?}",
            balance_store.backend
        );
        assert_eq!(balance_store.balance("int-alice").await, (0, 0, 0));
        assert_eq!(balance_store.cancel("t1").await.unwrap(), cancelled);
        assert_eq!(
            balance_store
                .reserve("t1", "int-alice", "alice", 300)
                .await
                .unwrap(),
            cancelled
        );
        expect_code(balance_store.confirm("t1").await, Code::FailedPrecondition);
        assert_eq!(balance_store.balance("int-alice").await, (0, 0, 0));
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn a_tombstone_refuses_the_late_reserve_and_conflicts_are_already_exists() {
    for db in testkit::db::all("balance_store_tombstone").await {
        let mut balance_store = start(&db, Rules::default()).await;
        let tombstone = balance_store.cancel("t-late").await.unwrap();
        assert_eq!(tombstone.status(), ReservationStatus::Cancelled);
        let late = balance_store
            .reserve("t-late", "int-alice", "alice", 500)
            .await
            .unwrap();
        assert_eq!(late, tombstone, "{:?}", balance_store.backend);
        assert_eq!(balance_store.balance("int-alice").await, (0, 0, 0));

        balance_store
            .reserve("t1", "int-alice", "alice", 100)
            .await
            .unwrap();
        let status = expect_code(
            balance_store.reserve("t1", "int-alice", "alice", 101).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains("t1"), "{status:?}");
        expect_code(
            balance_store.reserve("t1", "int-bob", "bob", 100).await,
            Code::AlreadyExists,
        );
        assert_eq!(balance_store.balance("int-alice").await, (0, 100, 0));
        assert_eq!(balance_store.balance("int-bob").await, (0, 0, 0));
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn refused_credits_hold_nothing_and_cannot_be_confirmed() {
    for db in testkit::db::all("balance_store_refused").await {
        let mut balance_store = start(&db, Rules::default()).await;
        let refused = balance_store
            .reserve("t1", "int-bob", "alice", 100)
            .await
            .unwrap();
        assert_eq!(refused.status(), ReservationStatus::Refused);
        assert_eq!(refused.refusal_reason(), RefusalReason::AccountNotOwned);
        let status = expect_code(balance_store.confirm("t1").await, Code::FailedPrecondition);
        assert!(status.message().contains("refused"), "{status:?}");
        assert_eq!(balance_store.cancel("t1").await.unwrap(), refused);
        assert_eq!(
            balance_store.balance("int-bob").await,
            (0, 0, 0),
            "{:?}",
            balance_store.backend
        );

        expect_code(balance_store.reservation("t-never").await, Code::NotFound);
        expect_code(
            balance_store.confirm("t-never").await,
            Code::FailedPrecondition,
        );
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn invalid_requests_are_invalid_argument() {
    for db in testkit::db::all("balance_store_invalid").await {
        let mut balance_store = start(&db, Rules::default()).await;
        let long_id = "t".repeat(129);
        let cases = [
            ("", "int-alice", "alice", 1, "transfer_id"),
            (long_id.as_str(), "int-alice", "alice", 1, "transfer_id"),
            ("t1", "", "alice", 1, "account_id"),
            ("t1", "int-alice", "", 1, "user_id"),
            ("t1", "int-alice", "alice", 0, "amount.minor_units"),
        ];
        for (transfer_id, account_id, user_id, amount, field) in cases {
            let status = expect_code(
                balance_store
                    .reserve(transfer_id, account_id, user_id, amount)
                    .await,
                Code::InvalidArgument,
            );
            assert!(status.message().contains(field), "{status:?} lacks {field}");
        }
        expect_code(balance_store.confirm("").await, Code::InvalidArgument);
        expect_code(balance_store.cancel("").await, Code::InvalidArgument);
        expect_code(balance_store.reservation("").await, Code::InvalidArgument);
        expect_code(balance_store.reservation("t1").await, Code::NotFound);
        balance_store.stop().await;
    }
}
