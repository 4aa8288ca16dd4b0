//! The audit's reads of the whole book through the API (ListReservations, ListAccounts),
//! on every back end: every reservation of every status and every account with what
//! explains its balances, in key order, a bounded page at a time; sizes over the bound
//! and tokens not issued here are INVALID_ARGUMENT.

mod common;

use banktransfer_api::reservation::v1::{
    AccountStatement, ListAccountsRequest, ListReservationsRequest, Reservation, ReservationStatus,
};
use common::{BalanceStore, expect_code, start};
use internal_balance_store::rules::Rules;
use service_kit::db::{self, PoolSettings};
use tonic::Code;

/// Every page of ListReservations at `page_size`: the reservations, and how many pages.
async fn all_reservations(store: &mut BalanceStore, page_size: u32) -> (Vec<Reservation>, usize) {
    let (mut listed, mut pages, mut page_token) = (Vec::new(), 0, String::new());
    loop {
        let request = ListReservationsRequest {
            page_size,
            page_token: page_token.clone(),
        };
        let page = store.client.list_reservations(request).await.unwrap();
        let page = page.into_inner();
        pages += 1;
        assert!(page_size == 0 || page.reservations.len() <= page_size as usize);
        listed.extend(page.reservations);
        if page.next_page_token.is_empty() {
            return (listed, pages);
        }
        assert!(pages < 100, "the pages never end");
        page_token = page.next_page_token;
    }
}

async fn all_accounts(store: &mut BalanceStore, page_size: u32) -> Vec<AccountStatement> {
    let (mut listed, mut page_token) = (Vec::new(), String::new());
    for _ in 0..100 {
        let request = ListAccountsRequest {
            page_size,
            page_token: page_token.clone(),
        };
        let page = store.client.list_accounts(request).await.unwrap();
        let page = page.into_inner();
        listed.extend(page.accounts);
        if page.next_page_token.is_empty() {
            return listed;
        }
        page_token = page.next_page_token;
    }
    panic!("the pages never end");
}

/// (account_id, opening, (available, reserved, confirmed), (held total, confirmed total)).
type Explained = (String, Option<i64>, (i64, i64, i64), (i64, i64));

fn explained(statement: &AccountStatement) -> Explained {
    let account = statement
        .account
        .as_ref()
        .expect("each statement has its account");
    (
        account.account_id.clone(),
        statement.opening_minor_units,
        (
            account.available_minor_units,
            account.reserved_minor_units,
            account.confirmed_minor_units,
        ),
        (
            statement.reservations_held_minor_units,
            statement.reservations_confirmed_minor_units,
        ),
    )
}

#[tokio::test]
async fn the_whole_book_lists_in_key_order_a_page_at_a_time() {
    for db in testkit::db::all("balance_store_listing").await {
        let mut store = start(&db, Rules::default()).await;
        store.open("int-carol", "carol", 700, "USD").await.unwrap();
        store
            .reserve("t-a", "int-alice", "alice", 100)
            .await
            .unwrap();
        store.confirm("t-a").await.unwrap();
        store
            .reserve("t-b", "int-alice", "alice", 50)
            .await
            .unwrap();
        // A tombstone, a released hold and a refusal: all listed, none counted.
        store.cancel("t-c").await.unwrap();
        store.reserve("t-d", "int-bob", "bob", 30).await.unwrap();
        store.cancel("t-d").await.unwrap();
        let refused = store.reserve("t-e", "int-nobody", "bob", 5).await.unwrap();
        assert_eq!(refused.status(), ReservationStatus::Refused);

        let (listed, pages) = all_reservations(&mut store, 2).await;
        let seen: Vec<(&str, ReservationStatus)> = listed
            .iter()
            .map(|r| (r.transfer_id.as_str(), r.status()))
            .collect();
        assert_eq!(
            seen,
            [
                ("t-a", ReservationStatus::Confirmed),
                ("t-b", ReservationStatus::Held),
                ("t-c", ReservationStatus::Cancelled),
                ("t-d", ReservationStatus::Cancelled),
                ("t-e", ReservationStatus::Refused),
            ],
            "{:?}",
            store.backend
        );
        assert_eq!(pages, 3);
        assert_eq!(listed[0].account_id, "int-alice");
        assert_eq!(listed[0].amount.as_ref().unwrap().minor_units, 100);
        assert!(listed[2].amount.is_none(), "a tombstone has no terms");
        // 0 asks for the default page, which holds them all.
        assert_eq!(all_reservations(&mut store, 0).await, (listed, 1));

        let accounts: Vec<Explained> = all_accounts(&mut store, 2)
            .await
            .iter()
            .map(explained)
            .collect();
        assert_eq!(
            accounts,
            [
                ("int-alice".into(), Some(0), (100, 50, 100), (50, 100)),
                ("int-bob".into(), Some(0), (0, 0, 0), (0, 0)),
                ("int-carol".into(), Some(700), (700, 0, 0), (0, 0)),
            ],
            "{:?}",
            store.backend
        );
        store.stop().await;
    }
}

#[tokio::test]
async fn page_sizes_over_the_bound_and_foreign_tokens_are_invalid_arguments() {
    for db in testkit::db::all("balance_store_listing_bad").await {
        let mut store = start(&db, Rules::default()).await;
        store.reserve("t-1", "int-alice", "alice", 1).await.unwrap();
        store.reserve("t-2", "int-alice", "alice", 1).await.unwrap();
        let list = |page_size, page_token: &str| ListReservationsRequest {
            page_size,
            page_token: page_token.into(),
        };
        let status = expect_code(
            store.client.list_reservations(list(1_001, "")).await,
            Code::InvalidArgument,
        );
        assert!(status.message().starts_with("page_size"), "{status:?}");
        assert!(
            store
                .client
                .list_reservations(list(1_000, ""))
                .await
                .is_ok()
        );
        for garbage in ["garbage", "00", "7265736572766174696f6e733a"] {
            let status = expect_code(
                store.client.list_reservations(list(1, garbage)).await,
                Code::InvalidArgument,
            );
            assert!(status.message().starts_with("page_token"), "{status:?}");
        }
        // A ListReservations token is no ListAccounts token.
        let first = store.client.list_reservations(list(1, "")).await.unwrap();
        let token = first.into_inner().next_page_token;
        assert!(!token.is_empty());
        let accounts = ListAccountsRequest {
            page_size: 1,
            page_token: token,
        };
        expect_code(
            store.client.list_accounts(accounts).await,
            Code::InvalidArgument,
        );
        let too_many = ListAccountsRequest {
            page_size: 5_000,
            page_token: String::new(),
        };
        expect_code(
            store.client.list_accounts(too_many).await,
            Code::InvalidArgument,
        );
        store.stop().await;
    }
}

/// An account opened before opening balances were recorded (migration 0002 leaves them
/// NULL) lists with none: nothing can explain its balances.
#[tokio::test]
async fn an_account_opened_before_opening_balances_lists_without_one() {
    for db in testkit::db::all("balance_store_listing_legacy").await {
        let mut store = start(&db, Rules::default()).await;
        // Answered once the schema is migrated and the accounts opened.
        store.account("int-bob").await.unwrap();
        let sql = db::connect(&db.url, PoolSettings::default()).await.unwrap();
        sqlx::query("UPDATE accounts SET opening_minor = NULL WHERE account_id = 'int-bob'")
            .execute(&sql.pool)
            .await
            .unwrap();
        sql.pool.close().await;
        let accounts = all_accounts(&mut store, 0).await;
        let openings: Vec<(String, Option<i64>)> = accounts
            .iter()
            .map(|s| {
                (
                    s.account.as_ref().unwrap().account_id.clone(),
                    s.opening_minor_units,
                )
            })
            .collect();
        assert_eq!(
            openings,
            [("int-alice".into(), Some(0)), ("int-bob".into(), None)],
            "{:?}",
            store.backend
        );
        store.stop().await;
    }
}
