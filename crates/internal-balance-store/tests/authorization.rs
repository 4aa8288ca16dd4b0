//! Who may call what, with real certificates over TLS: reservations only for the
//! coordinator's identities (gateway and reconciler), OpenAccount only for the operator,
//! GetAccount for the operator and the reconciler's audit, and nothing at all in
//! plaintext. A refused call changes nothing.

mod common;

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::balance_store::v1::balance_store_service_client::BalanceStoreServiceClient;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_api::reservation::v1::ReservationStatus;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use common::{
    BalanceStore, EXTERNAL_INSTITUTION, GATEWAY, OPERATOR, RECONCILER, SERVICE, expect_code, money,
    start,
};
use internal_balance_store::rules::Rules;
use tonic::Code;
use tonic::transport::Channel;

fn reserve_request(transfer_id: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        transfer_id: transfer_id.into(),
        account_id: "int-alice".into(),
        user_id: "alice".into(),
        amount: Some(money(100, "USD")),
    }
}

/// Reserve `t-reserve`, confirm it, cancel `t-cancel` (on an unknown transfer a cancel
/// would leave a tombstone) and read `t-reserve`, as `client`: each must fail with `code`.
async fn every_reservation_call_fails(client: &mut ReservationServiceClient<Channel>, code: Code) {
    expect_code(client.reserve(reserve_request("t-reserve")).await, code);
    let confirm = pb::ConfirmRequest {
        transfer_id: "t-reserve".into(),
    };
    expect_code(client.confirm(confirm).await, code);
    let cancel = pb::CancelRequest {
        transfer_id: "t-cancel".into(),
    };
    expect_code(client.cancel(cancel).await, code);
    let get = pb::GetReservationRequest {
        transfer_id: "t-reserve".into(),
    };
    expect_code(client.get_reservation(get).await, code);
}

/// Nothing reserved, cancelled or credited since start-up (checked as the gateway and the
/// operator).
async fn assert_untouched(balance_store: &mut BalanceStore) {
    expect_code(balance_store.reservation("t-reserve").await, Code::NotFound);
    expect_code(balance_store.reservation("t-cancel").await, Code::NotFound);
    assert_eq!(balance_store.balance("int-alice").await, (0, 0, 0));
}

#[tokio::test]
async fn reservations_are_served_only_to_the_coordinators_identities() {
    let db = testkit::db::sqlite("balance_store_authz_reservations");
    let mut balance_store = start(&db, Rules::default()).await;

    let mut anonymous = balance_store.reservations_as(None).await;
    every_reservation_call_fails(&mut anonymous, Code::Unauthenticated).await;
    for identity in [OPERATOR, EXTERNAL_INSTITUTION, SERVICE] {
        let mut client = balance_store.reservations_as(Some(identity)).await;
        every_reservation_call_fails(&mut client, Code::PermissionDenied).await;
    }
    assert_untouched(&mut balance_store).await;

    // The reconciler's certificate may, as the gateway's may (every other test).
    let mut reconciler = balance_store.reservations_as(Some(RECONCILER)).await;
    let held = reconciler
        .reserve(reserve_request("t-reserve"))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held.status(), ReservationStatus::Held);
    assert_eq!(balance_store.reservation("t-reserve").await.unwrap(), held);
    assert_eq!(balance_store.balance("int-alice").await, (0, 100, 0));
    balance_store.stop().await;
}

#[tokio::test]
async fn only_the_operator_opens_accounts_and_the_reconciler_may_read_them() {
    let db = testkit::db::sqlite("balance_store_authz_accounts");
    let mut balance_store = start(&db, Rules::default()).await;
    let open = balance_store_pb::OpenAccountRequest {
        account_id: "int-mallory".into(),
        user_id: "mallory".into(),
        opening_balance: Some(money(1_000_000, "USD")),
    };
    let read = balance_store_pb::GetAccountRequest {
        account_id: "int-alice".into(),
    };

    let mut anonymous = balance_store.accounts_as(None).await;
    expect_code(
        anonymous.open_account(open.clone()).await,
        Code::Unauthenticated,
    );
    expect_code(
        anonymous.get_account(read.clone()).await,
        Code::Unauthenticated,
    );
    for identity in [GATEWAY, RECONCILER] {
        let mut client = balance_store.accounts_as(Some(identity)).await;
        expect_code(
            client.open_account(open.clone()).await,
            Code::PermissionDenied,
        );
    }
    expect_code(balance_store.account("int-mallory").await, Code::NotFound);

    let mut gateway = balance_store.accounts_as(Some(GATEWAY)).await;
    expect_code(
        gateway.get_account(read.clone()).await,
        Code::PermissionDenied,
    );
    let mut reconciler = balance_store.accounts_as(Some(RECONCILER)).await;
    let alice = reconciler
        .get_account(read)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(alice.user_id, "alice");
    balance_store.stop().await;
}

#[tokio::test]
async fn plaintext_gets_no_answer() {
    let db = testkit::db::sqlite("balance_store_authz_plaintext");
    let mut balance_store = start(&db, Rules::default()).await;
    // The connection may fail outright or on the first call; no call may succeed.
    if let Ok(channel) = balance_store.plaintext_channel().await {
        let mut reservations = ReservationServiceClient::new(channel.clone());
        let reserved = reservations.reserve(reserve_request("t-reserve")).await;
        assert!(reserved.is_err(), "{reserved:?}");
        let mut accounts = BalanceStoreServiceClient::new(channel);
        let read = accounts
            .get_account(balance_store_pb::GetAccountRequest {
                account_id: "int-alice".into(),
            })
            .await;
        assert!(read.is_err(), "{read:?}");
    }
    assert_untouched(&mut balance_store).await;
    balance_store.stop().await;
}
