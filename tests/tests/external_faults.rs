//! The external institution misbehaving on purpose (its FaultInjection service): the
//! transfer fails or stays PROCESSING as the protocol says, and at rest every hold is
//! released or confirmed on both sides. The services' own 200 ms budget
//! (`ClusterConfig::timed`): whether a fault fails a transfer or leaves it PROCESSING
//! turns on it.

use std::time::{Duration, Instant};

use banktransfer_api::external::v1::{FaultKind, Operation};
use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_api::reservation::v1::ReservationStatus;
use banktransfer_e2e::scenarios::SETTLE_TIMEOUT;
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn institution_unavailable_fails_and_holds_nothing() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    let clients = cluster.clients().clone();
    clients
        .inject_fault(Operation::Reserve, FaultKind::Unavailable, 0, 0)
        .await;
    let transfers = cluster.transfers();
    let (t, elapsed) = transfers
        .approve_ok(&TransferRequest::new("alice", 25_000))
        .await;
    eprintln!("[e2e] answered in {elapsed:?}: {t:?}");
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    assert!(!t.failure_reason.is_empty(), "{t:?}");

    let report = cluster.assert_invariants().await;
    clients.clear_faults().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 100_000);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 0);
    // The institution never applied the reserve: nothing or a tombstone.
    match clients.external_reservation(&t.transfer_id).await {
        Ok(r) => assert_ne!(r.status(), ReservationStatus::Confirmed, "{r:?}"),
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
    }

    // Once it is back, transfers go through again.
    let (ok, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 1_000))
        .await;
    assert_eq!(ok.status(), TransferStatus::Succeeded, "{ok:?}");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reserve_reply_fails_in_budget_and_the_applied_hold_is_released() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    let clients = cluster.clients().clone();
    clients
        .inject_fault(Operation::Reserve, FaultKind::LoseReply, 0, 1)
        .await;
    let transfers = cluster.transfers();
    let started = Instant::now();
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 25_000))
        .await;
    let elapsed = started.elapsed();
    eprintln!("[e2e] answered in {elapsed:?}: {t:?}");
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let budget = Duration::from_millis(cluster.config().budget.total_ms);
    assert!(
        elapsed < budget + Duration::from_millis(800),
        "the answer took {elapsed:?}, the budget is {budget:?}"
    );

    let report = cluster.assert_invariants().await;
    let ext = &report.accounts["ext-alice"];
    assert_eq!(
        (
            ext.available_minor_units,
            ext.reserved_minor_units,
            ext.confirmed_minor_units
        ),
        (100_000, 0, 0),
        "the hold applied behind the lost reply is released"
    );
    let r = clients
        .external_reservation(&t.transfer_id)
        .await
        .expect("the institution applied the reserve");
    assert_eq!(r.status(), ReservationStatus::Cancelled, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_confirm_leaves_processing_until_the_reconciler_finishes() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    let clients = cluster.clients().clone();
    clients
        .inject_fault(Operation::Confirm, FaultKind::Unavailable, 0, 0)
        .await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let (t, _) = transfers.approve_ok(&req).await;
    assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");

    // While the institution refuses to confirm, the transfer stays committed: the funds
    // are on hold and nothing is released.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let still = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(still.status(), TransferStatus::Processing, "{still:?}");
    let ext = clients
        .external_account("ext-alice")
        .await
        .expect("ext-alice");
    assert_eq!(
        (ext.available_minor_units, ext.reserved_minor_units),
        (75_000, 25_000),
        "the hold stays while the confirm fails"
    );

    clients.clear_faults().await;
    let done = transfers
        .wait_for_status(&req.key(), TransferStatus::Succeeded, SETTLE_TIMEOUT)
        .await;
    eprintln!("[e2e] finished by the reconciler: {done:?}");
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 75_000);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 25_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reserve_past_the_budget_fails_and_releases() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    let clients = cluster.clients().clone();
    clients
        .inject_fault(Operation::Reserve, FaultKind::Latency, 1_000, 1)
        .await;
    let transfers = cluster.transfers();
    let started = Instant::now();
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 25_000))
        .await;
    let elapsed = started.elapsed();
    eprintln!("[e2e] answered in {elapsed:?}: {t:?}");
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    assert!(
        elapsed < Duration::from_millis(1_000),
        "answered after {elapsed:?}"
    );
    // Let the slow reserve land (or not) before checking the books.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 100_000);
}
