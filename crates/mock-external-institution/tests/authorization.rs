//! Who may call what, with real certificates over TLS: reservations only for the
//! coordinator's identities (gateway and reconciler), OpenAccount and fault injection only
//! for the operator, GetAccount for the operator and the reconciler's audit, and nothing
//! at all in plaintext. A refused call changes nothing.

mod common;

use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_client::ExternalInstitutionServiceClient;
use banktransfer_api::external::v1::fault_injection_service_client::FaultInjectionServiceClient;
use banktransfer_api::external::v1::{FaultKind, InjectFaultRequest, ListFaultsRequest, Operation};
use banktransfer_api::reservation::v1 as pb;
use banktransfer_api::reservation::v1::ReservationStatus;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use common::{
    BALANCE_STORE, GATEWAY, Institution, OPERATOR, RECONCILER, SERVICE, expect_code,
    reserve_request, seed, start, usd_like,
};
use tonic::Code;
use tonic::transport::Channel;

const OPENING_MINOR: i64 = 1_000;

/// Reserve `t-reserve`, confirm it, cancel `t-cancel` (on an unknown transfer a cancel
/// would leave a tombstone) and read `t-reserve`, as `client`: each must fail with `code`.
async fn every_reservation_call_fails(client: &mut ReservationServiceClient<Channel>, code: Code) {
    expect_code(
        client
            .reserve(reserve_request("t-reserve", "ext-alice", "alice", 100))
            .await,
        code,
    );
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

/// Nothing reserved, cancelled or moved since start-up (checked as the gateway and the
/// operator).
async fn assert_untouched(bank: &mut Institution) {
    expect_code(bank.reservation("t-reserve").await, Code::NotFound);
    expect_code(bank.reservation("t-cancel").await, Code::NotFound);
    assert_eq!(bank.balance("ext-alice").await, (OPENING_MINOR, 0, 0));
}

#[tokio::test]
async fn reservations_are_served_only_to_the_coordinators_identities() {
    let db = testkit::db::sqlite("ext_authz_reservations");
    let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;

    let mut anonymous = bank.reservations_as(None).await;
    every_reservation_call_fails(&mut anonymous, Code::Unauthenticated).await;
    for identity in [OPERATOR, BALANCE_STORE, SERVICE] {
        let mut client = bank.reservations_as(Some(identity)).await;
        every_reservation_call_fails(&mut client, Code::PermissionDenied).await;
    }
    assert_untouched(&mut bank).await;

    // The reconciler's certificate may, as the gateway's may (every other test).
    let mut reconciler = bank.reservations_as(Some(RECONCILER)).await;
    let held = reconciler
        .reserve(reserve_request("t-reserve", "ext-alice", "alice", 100))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held.status(), ReservationStatus::Held);
    assert_eq!(bank.reservation("t-reserve").await.unwrap(), held);
    assert_eq!(
        bank.balance("ext-alice").await,
        (OPENING_MINOR - 100, 100, 0)
    );
    bank.stop().await;
}

#[tokio::test]
async fn only_the_operator_opens_accounts_and_the_reconciler_may_read_them() {
    let db = testkit::db::sqlite("ext_authz_accounts");
    let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;
    let open = external_pb::OpenAccountRequest {
        account_id: "ext-mallory".into(),
        user_id: "mallory".into(),
        opening_balance: Some(usd_like(1_000_000, "USD")),
    };
    let read = external_pb::GetAccountRequest {
        account_id: "ext-alice".into(),
    };

    let mut anonymous = bank.accounts_as(None).await;
    expect_code(
        anonymous.open_account(open.clone()).await,
        Code::Unauthenticated,
    );
    expect_code(
        anonymous.get_account(read.clone()).await,
        Code::Unauthenticated,
    );
    for identity in [GATEWAY, RECONCILER] {
        let mut client = bank.accounts_as(Some(identity)).await;
        expect_code(
            client.open_account(open.clone()).await,
            Code::PermissionDenied,
        );
    }
    expect_code(bank.account("ext-mallory").await, Code::NotFound);

    let mut gateway = bank.accounts_as(Some(GATEWAY)).await;
    expect_code(
        gateway.get_account(read.clone()).await,
        Code::PermissionDenied,
    );
    let mut reconciler = bank.accounts_as(Some(RECONCILER)).await;
    let alice = reconciler
        .get_account(read)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(common::balance(&alice), (OPENING_MINOR, 0, 0));
    bank.stop().await;
}

#[tokio::test]
async fn only_the_operator_injects_faults() {
    let db = testkit::db::sqlite("ext_authz_faults");
    let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;
    let fault = InjectFaultRequest {
        operation: Operation::Reserve.into(),
        kind: FaultKind::Error.into(),
        latency_ms: 0,
        calls: 1,
    };
    let mut anonymous = FaultInjectionServiceClient::new(bank.channel_as(None).await);
    expect_code(anonymous.inject_fault(fault).await, Code::Unauthenticated);
    expect_code(
        anonymous.list_faults(ListFaultsRequest {}).await,
        Code::Unauthenticated,
    );
    let mut gateway = FaultInjectionServiceClient::new(bank.channel_as(Some(GATEWAY)).await);
    expect_code(gateway.inject_fault(fault).await, Code::PermissionDenied);

    // No fault is armed: the operator sees none and the next reserve applies.
    let armed = bank
        .faults
        .list_faults(ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner()
        .faults;
    assert!(armed.is_empty(), "{armed:?}");
    let held = bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
    assert_eq!(held.status(), ReservationStatus::Held);
    bank.stop().await;
}

#[tokio::test]
async fn plaintext_gets_no_answer() {
    let db = testkit::db::sqlite("ext_authz_plaintext");
    let mut bank = start(&db, vec![seed("ext-alice", "alice", OPENING_MINOR)]).await;
    // The connection may fail outright or on the first call; no call may succeed.
    if let Ok(channel) = bank.plaintext_channel().await {
        let mut reservations = ReservationServiceClient::new(channel.clone());
        let reserved = reservations
            .reserve(reserve_request("t-reserve", "ext-alice", "alice", 100))
            .await;
        assert!(reserved.is_err(), "{reserved:?}");
        let mut accounts = ExternalInstitutionServiceClient::new(channel);
        let read = accounts
            .get_account(external_pb::GetAccountRequest {
                account_id: "ext-alice".into(),
            })
            .await;
        assert!(read.is_err(), "{read:?}");
    }
    assert_untouched(&mut bank).await;
    bank.stop().await;
}
