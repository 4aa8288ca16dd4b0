//! Fault injection through the API: ERROR and UNAVAILABLE answer without applying,
//! LATENCY applies, LOSE_REPLY applies durably while the caller's deadline passes; counted
//! faults fire that many times; reads never meet faults; requests are checked and bounded.

mod common;

use std::time::Duration;

use banktransfer_api::external::v1::{
    ClearFaultsRequest, Fault, FaultKind, InjectFaultRequest, ListFaultsRequest, Operation,
};
use banktransfer_api::reservation::v1::ReservationStatus;
use common::{Institution, expect_code, reserve_request, seed, start};
use tonic::{Code, Status};

/// Bounds the wait for the detached apply of a lost reply (see below).
const APPLIED_POLLS_MAX: u32 = 200;

async fn inject(
    bank: &mut Institution,
    operation: Operation,
    kind: FaultKind,
    latency_ms: u32,
    calls: u32,
) -> Result<Fault, Status> {
    let request = InjectFaultRequest {
        operation: operation.into(),
        kind: kind.into(),
        latency_ms,
        calls,
    };
    let response = bank.faults.inject_fault(request).await?.into_inner();
    Ok(response.fault.expect("the injected fault"))
}

async fn active_faults(bank: &mut Institution) -> Vec<Fault> {
    bank.faults
        .list_faults(ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner()
        .faults
}

#[tokio::test]
async fn error_and_unavailable_faults_answer_without_applying() {
    for db in testkit::db::all("ext_fault_error").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 1_000)]).await;

        inject(&mut bank, Operation::Reserve, FaultKind::Error, 0, 1)
            .await
            .unwrap();
        let status = expect_code(
            bank.reserve("t1", "ext-alice", "alice", 100).await,
            Code::Internal,
        );
        assert!(status.message().contains("injected fault"), "{status:?}");
        expect_code(bank.reservation("t1").await, Code::NotFound);
        assert_eq!(
            bank.balance("ext-alice").await,
            (1_000, 0, 0),
            "{:?}",
            bank.backend
        );

        // Fired once, then gone: the retry applies.
        assert!(active_faults(&mut bank).await.is_empty());
        let held = bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
        assert_eq!(held.status(), ReservationStatus::Held);

        inject(&mut bank, Operation::Confirm, FaultKind::Unavailable, 0, 1)
            .await
            .unwrap();
        expect_code(bank.confirm("t1").await, Code::Unavailable);
        assert_eq!(
            bank.reservation("t1").await.unwrap().status(),
            ReservationStatus::Held
        );
        assert_eq!(bank.balance("ext-alice").await, (900, 100, 0));
        let confirmed = bank.confirm("t1").await.unwrap();
        assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
        assert_eq!(bank.balance("ext-alice").await, (900, 0, 100));
        bank.stop().await;
    }
}

#[tokio::test]
async fn a_latency_fault_delays_then_applies() {
    for db in testkit::db::all("ext_fault_latency").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 1_000)]).await;
        let fault = inject(&mut bank, Operation::Any, FaultKind::Latency, 20, 1)
            .await
            .unwrap();
        assert_eq!(fault.latency_ms, 20);
        assert_eq!(fault.remaining_calls, 1);
        let held = bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
        assert_eq!(held.status(), ReservationStatus::Held, "{:?}", bank.backend);
        assert_eq!(bank.balance("ext-alice").await, (900, 100, 0));
        assert!(active_faults(&mut bank).await.is_empty());
        bank.stop().await;
    }
}

#[tokio::test]
async fn a_lost_reply_is_applied_durably_while_the_caller_times_out() {
    for db in testkit::db::all("ext_fault_lose").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 1_000)]).await;
        inject(&mut bank, Operation::Reserve, FaultKind::LoseReply, 0, 1)
            .await
            .unwrap();

        let request = service_kit::client::with_deadline(
            reserve_request("t1", "ext-alice", "alice", 100),
            Duration::from_millis(200),
        );
        let status = bank.client.reserve(request).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );

        // The apply runs on its own task, past the caller's deadline: wait (boundedly)
        // for it to commit rather than assume how long it takes.
        let mut reservation = bank.reservation("t1").await;
        for _ in 0..APPLIED_POLLS_MAX {
            if reservation.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            reservation = bank.reservation("t1").await;
        }
        assert_eq!(
            reservation.unwrap().status(),
            ReservationStatus::Held,
            "{:?}",
            bank.backend
        );
        assert_eq!(bank.balance("ext-alice").await, (900, 100, 0));

        // The caller's retry replays the hold instead of holding twice.
        let replay = bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
        assert_eq!(replay.status(), ReservationStatus::Held);
        assert_eq!(bank.balance("ext-alice").await, (900, 100, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn unlimited_faults_fire_until_cleared_and_reads_never_meet_them() {
    for db in testkit::db::all("ext_fault_unlimited").await {
        let mut bank = start(&db, vec![seed("ext-alice", "alice", 1_000)]).await;
        bank.reserve("t1", "ext-alice", "alice", 100).await.unwrap();
        inject(&mut bank, Operation::Any, FaultKind::Error, 0, 0)
            .await
            .unwrap();

        for _ in 0..3 {
            expect_code(bank.cancel("t1").await, Code::Internal);
        }
        expect_code(
            bank.reserve("t2", "ext-alice", "alice", 1).await,
            Code::Internal,
        );
        // Reads and account opening are never faulted.
        assert_eq!(
            bank.reservation("t1").await.unwrap().status(),
            ReservationStatus::Held
        );
        assert_eq!(
            bank.balance("ext-alice").await,
            (900, 100, 0),
            "{:?}",
            bank.backend
        );
        bank.open("ext-carol", "carol", 5, "USD").await.unwrap();

        let faults = active_faults(&mut bank).await;
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].remaining_calls, 0);
        let cleared = bank
            .faults
            .clear_faults(ClearFaultsRequest {})
            .await
            .unwrap();
        assert_eq!(cleared.into_inner().cleared, 1);

        let cancelled = bank.cancel("t1").await.unwrap();
        assert_eq!(cancelled.status(), ReservationStatus::Cancelled);
        assert_eq!(bank.balance("ext-alice").await, (1_000, 0, 0));
        bank.stop().await;
    }
}

#[tokio::test]
async fn faults_match_their_operation_in_insertion_order() {
    for db in testkit::db::all("ext_fault_order").await {
        faults_match_in_order_on(&db).await;
    }
}

async fn faults_match_in_order_on(db: &testkit::db::TestDatabase) {
    let mut bank = start(db, vec![seed("ext-alice", "alice", 1_000)]).await;
    inject(&mut bank, Operation::Cancel, FaultKind::Unavailable, 0, 1)
        .await
        .unwrap();
    inject(&mut bank, Operation::Reserve, FaultKind::Error, 0, 2)
        .await
        .unwrap();
    inject(&mut bank, Operation::Any, FaultKind::Unavailable, 0, 1)
        .await
        .unwrap();

    // Reserve meets the reserve fault (second in line) twice, then the ANY fault.
    expect_code(
        bank.reserve("t1", "ext-alice", "alice", 1).await,
        Code::Internal,
    );
    let faults = active_faults(&mut bank).await;
    assert_eq!(faults.len(), 3);
    assert_eq!(faults[1].remaining_calls, 1);
    expect_code(
        bank.reserve("t1", "ext-alice", "alice", 1).await,
        Code::Internal,
    );
    expect_code(
        bank.reserve("t1", "ext-alice", "alice", 1).await,
        Code::Unavailable,
    );
    assert_eq!(
        bank.reserve("t1", "ext-alice", "alice", 1)
            .await
            .unwrap()
            .status(),
        ReservationStatus::Held
    );
    // The cancel fault was waiting for a cancel all along.
    expect_code(bank.cancel("t1").await, Code::Unavailable);
    assert!(active_faults(&mut bank).await.is_empty());
    bank.stop().await;
}

/// The fault list lives in memory, whatever the database: SQLite suffices.
#[tokio::test]
async fn fault_requests_are_checked_and_bounded() {
    let db = testkit::db::sqlite("ext_fault_invalid");
    let mut bank = start(&db, Vec::new()).await;
    let invalid = [
        (Operation::Unspecified, FaultKind::Error, 0, "operation"),
        (Operation::Any, FaultKind::Unspecified, 0, "kind"),
        (Operation::Any, FaultKind::Latency, 0, "latency_ms"),
        (Operation::Any, FaultKind::Latency, 60_001, "latency_ms"),
    ];
    for (operation, kind, latency_ms, field) in invalid {
        let status = expect_code(
            inject(&mut bank, operation, kind, latency_ms, 0).await,
            Code::InvalidArgument,
        );
        assert!(status.message().contains(field), "{status:?} lacks {field}");
    }
    inject(&mut bank, Operation::Any, FaultKind::Latency, 60_000, 0)
        .await
        .unwrap();

    for _ in 1..64 {
        inject(&mut bank, Operation::Confirm, FaultKind::Error, 0, 1)
            .await
            .unwrap();
    }
    expect_code(
        inject(&mut bank, Operation::Confirm, FaultKind::Error, 0, 1).await,
        Code::ResourceExhausted,
    );
    assert_eq!(active_faults(&mut bank).await.len(), 64);
    let cleared = bank
        .faults
        .clear_faults(ClearFaultsRequest {})
        .await
        .unwrap();
    assert_eq!(cleared.into_inner().cleared, 64);
    inject(&mut bank, Operation::Confirm, FaultKind::Error, 0, 1)
        .await
        .unwrap();
    bank.stop().await;
}
