//! The balance store's rules through the API, on every back end: each refusal is a
//! REFUSED reservation with its reason (not an error) that holds nothing, and the windows
//! the rules count over move with the clock.

mod common;

use banktransfer_api::reservation::v1::{RefusalReason, ReservationStatus};
use common::{BalanceStore, start};
use internal_balance_store::rules::Rules;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 60 * MINUTE_MS;

/// Asserts the reserve is refused for `reason`, recorded, and holds nothing.
async fn assert_refused(
    balance_store: &mut BalanceStore,
    transfer_id: &str,
    account_id: &str,
    user_id: &str,
    amount_minor: i64,
    reason: RefusalReason,
) -> String {
    let before = balance_store.balance(account_id).await;
    let refused = balance_store
        .reserve(transfer_id, account_id, user_id, amount_minor)
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        ReservationStatus::Refused,
        "{transfer_id}: {refused:?}"
    );
    assert_eq!(
        refused.refusal_reason(),
        reason,
        "{transfer_id}: {refused:?}"
    );
    assert_eq!(
        balance_store.reservation(transfer_id).await.unwrap(),
        refused
    );
    assert_eq!(
        balance_store.balance(account_id).await,
        before,
        "{transfer_id} held something"
    );
    refused.refusal_message
}

async fn assert_held(
    balance_store: &mut BalanceStore,
    transfer_id: &str,
    user_id: &str,
    amount_minor: i64,
) {
    let account_id = format!("int-{user_id}");
    let held = balance_store
        .reserve(transfer_id, &account_id, user_id, amount_minor)
        .await
        .unwrap();
    assert_eq!(
        held.status(),
        ReservationStatus::Held,
        "{transfer_id}: {held:?}"
    );
}

#[tokio::test]
async fn amounts_at_the_review_threshold_and_blocked_users_are_antifraud() {
    for db in testkit::db::all("balance_store_antifraud").await {
        let rules = Rules {
            blocked_users: vec!["bob".into()],
            ..Rules::default()
        };
        let mut balance_store = start(&db, rules).await;
        let why = assert_refused(
            &mut balance_store,
            "t-review",
            "int-alice",
            "alice",
            90_000,
            RefusalReason::Antifraud,
        )
        .await;
        assert_eq!(why, "amount needs manual review");
        assert_held(&mut balance_store, "t-under", "alice", 89_999).await;

        let why = assert_refused(
            &mut balance_store,
            "t-bob",
            "int-bob",
            "bob",
            1,
            RefusalReason::Antifraud,
        )
        .await;
        assert!(why.contains("bob"), "{why}");
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn transfers_above_the_largest_allowed_are_limit_exceeded() {
    for db in testkit::db::all("balance_store_max").await {
        let rules = Rules {
            transfer_minor_max: 50_000,
            ..Rules::default()
        };
        let mut balance_store = start(&db, rules).await;
        assert_held(&mut balance_store, "t-max", "alice", 50_000).await;
        assert_refused(
            &mut balance_store,
            "t-over",
            "int-alice",
            "alice",
            50_001,
            RefusalReason::LimitExceeded,
        )
        .await;
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn the_daily_inbound_limit_counts_held_and_confirmed_credits_for_24_hours() {
    for db in testkit::db::all("balance_store_daily").await {
        let rules = Rules {
            daily_inbound_limit_minor: 1_000,
            ..Rules::default()
        };
        let mut balance_store = start(&db, rules).await;
        assert_held(&mut balance_store, "t1", "alice", 400).await;
        balance_store.confirm("t1").await.unwrap();
        assert_held(&mut balance_store, "t2", "alice", 300).await;
        // A cancelled credit does not count.
        assert_held(&mut balance_store, "t3", "alice", 300).await;
        balance_store.cancel("t3").await.unwrap();

        // 400 confirmed + 300 held: 300 more fits exactly, 301 does not.
        assert_refused(
            &mut balance_store,
            "t4",
            "int-alice",
            "alice",
            301,
            RefusalReason::LimitExceeded,
        )
        .await;
        assert_held(&mut balance_store, "t5", "alice", 300).await;
        // The limit is per account: bob's account is untouched by alice's credits.
        assert_held(&mut balance_store, "t-bob", "bob", 1_000).await;

        // A day later the window has moved past all of them.
        balance_store.clock.advance_ms(DAY_MS);
        assert_held(&mut balance_store, "t6", "alice", 1_000).await;
        assert_eq!(
            balance_store.balance("int-alice").await,
            (400, 1_600, 400),
            "{:?}",
            balance_store.backend
        );
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn the_reserve_after_the_allowed_number_in_the_window_is_rate_limited() {
    for db in testkit::db::all("balance_store_rate").await {
        let rules = Rules {
            rate_limit_reserves_max: 3,
            rate_limit_window_ms: MINUTE_MS,
            ..Rules::default()
        };
        let mut balance_store = start(&db, rules).await;
        // Any outcome counts: a refused reserve used up one of the three.
        assert_refused(
            &mut balance_store,
            "t1",
            "int-alice",
            "alice",
            90_000,
            RefusalReason::Antifraud,
        )
        .await;
        assert_held(&mut balance_store, "t2", "alice", 10).await;
        balance_store.clock.advance_ms(MINUTE_MS / 2);
        assert_held(&mut balance_store, "t3", "alice", 10).await;
        let why = assert_refused(
            &mut balance_store,
            "t4",
            "int-alice",
            "alice",
            10,
            RefusalReason::RateLimited,
        )
        .await;
        assert!(why.contains("alice"), "{why}");
        // Replays are answered from the record: neither counted nor refused.
        assert_eq!(
            balance_store
                .reserve("t2", "int-alice", "alice", 10)
                .await
                .unwrap()
                .status(),
            ReservationStatus::Held
        );
        // Per user: bob is not limited by alice's reserves.
        assert_held(&mut balance_store, "t-bob", "bob", 10).await;

        // Past the first two: t1 and t2 left the window; t3 and t4 are still in it.
        balance_store.clock.advance_ms(MINUTE_MS / 2);
        assert_held(&mut balance_store, "t5", "alice", 10).await;
        assert_refused(
            &mut balance_store,
            "t6",
            "int-alice",
            "alice",
            10,
            RefusalReason::RateLimited,
        )
        .await;
        assert_eq!(
            balance_store.balance("int-alice").await,
            (0, 30, 0),
            "{:?}",
            balance_store.backend
        );
        balance_store.stop().await;
    }
}

#[tokio::test]
async fn invalid_rules_stop_the_start_up() {
    let db = testkit::db::sqlite("balance_store_bad_rules");
    let (mut settings, _pki) = common::with_tls(internal_balance_store::Settings {
        rules: Rules {
            rate_limit_window_ms: 0,
            ..Rules::default()
        },
        ..Default::default()
    });
    settings.common.database_url = db.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = internal_balance_store::run(settings, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rate_limit_window_ms"), "{err:#}");
}
