//! Opening and reading accounts: seed accounts at start-up, idempotent reopening, and
//! the refusals of conflicting or invalid requests.

mod common;

use common::{expect_code, seed, start};
use tonic::Code;

#[tokio::test]
async fn seed_accounts_open_once_and_keep_their_balance_across_restarts() {
    for db in testkit::db::all("ext_seed").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 100_000)]).await;
        let alice = bank.account("ext-alice").await.unwrap();
        assert_eq!(alice.user_id, "alice");
        assert_eq!(alice.currency, "USD");
        assert_eq!(
            common::balance(&alice),
            (100_000, 0, 0),
            "{:?}",
            bank.backend
        );
        bank.reserve("t1", "ext-alice", "alice", 2_500)
            .await
            .unwrap();
        bank.stop().await;

        // Same configuration, same database: the opening balance does not apply again.
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 100_000)]).await;
        assert_eq!(bank.balance("ext-alice").await, (97_500, 2_500, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn a_seed_account_that_conflicts_with_the_data_stops_the_start_up() {
    for db in testkit::db::all("ext_seed_conflict").await {
        let bank = start(&db, vec![seed("ext-alice", "alice", 1)]).await;
        bank.stop().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (settings, _pki) = common::with_tls(mock_external_institution::Settings {
            database_url: db.url.clone(),
            accounts: vec![seed("ext-alice", "mallory", 1)],
            ..Default::default()
        });
        let err = mock_external_institution::run(settings, listener, std::future::pending())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("ext-alice"), "{err:#}");
    }
}

#[tokio::test]
async fn open_is_idempotent_and_conflicting_reopens_are_already_exists() {
    for db in testkit::db::all("ext_open").await {
        let mut bank = start(&db, Vec::new()).await;
        let opened = bank.open("acc-1", "carol", 500, "USD").await.unwrap();
        assert_eq!(common::balance(&opened), (500, 0, 0), "{:?}", bank.backend);
        assert_eq!(bank.account("acc-1").await.unwrap(), opened);

        // Same owner and currency: the existing account, unchanged (not 9 999).
        let again = bank.open("acc-1", "carol", 9_999, "USD").await.unwrap();
        assert_eq!(again, opened);

        let other_owner = expect_code(
            bank.open("acc-1", "dave", 500, "USD").await,
            Code::AlreadyExists,
        );
        assert!(other_owner.message().contains("acc-1"), "{other_owner:?}");
        expect_code(
            bank.open("acc-1", "carol", 500, "EUR").await,
            Code::AlreadyExists,
        );
        assert_eq!(bank.balance("acc-1").await, (500, 0, 0));

        expect_code(bank.account("nobody").await, Code::NotFound);
        bank.stop().await;
    }
}

#[tokio::test]
async fn invalid_account_requests_are_invalid_argument() {
    for db in testkit::db::all("ext_open_invalid").await {
        let mut bank = start(&db, Vec::new()).await;
        let long_id = "a".repeat(129);
        let cases = [
            ("", "carol", 0, "USD", "account_id"),
            ("acc", "", 0, "USD", "user_id"),
            (long_id.as_str(), "carol", 0, "USD", "account_id"),
            ("acc", "carol", -1, "USD", "opening_balance.minor_units"),
            ("acc", "carol", 0, "usd", "opening_balance.currency"),
        ];
        for (account_id, user_id, opening, currency, field) in cases {
            let status = expect_code(
                bank.open(account_id, user_id, opening, currency).await,
                Code::InvalidArgument,
            );
            assert!(status.message().contains(field), "{status:?} lacks {field}");
        }
        let missing = banktransfer_api::external::v1::OpenAccountRequest {
            account_id: "acc".into(),
            user_id: "carol".into(),
            opening_balance: None,
        };
        let status = expect_code(
            bank.accounts.open_account(missing).await,
            Code::InvalidArgument,
        );
        assert!(status.message().contains("opening_balance"), "{status:?}");
        expect_code(bank.account("").await, Code::InvalidArgument);
        // Nothing was opened by any of them.
        expect_code(bank.account("acc").await, Code::NotFound);
        bank.stop().await;
    }
}
