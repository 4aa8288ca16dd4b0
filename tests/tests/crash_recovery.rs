//! Processes killed with SIGKILL at the worst moments: the reconciler settles whatever
//! was left, from the coordinator's records alone. The services' own 200 ms budget
//! (`ClusterConfig::timed`): what the gateway answers and when the reconciler takes over
//! turn on it.

use std::time::Duration;

use banktransfer_api::external::v1::{FaultKind, Operation};
use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_api::reservation::v1::ReservationStatus;
use banktransfer_e2e::scenarios::{self, SETTLE_TIMEOUT};
use banktransfer_e2e::{Cluster, ClusterConfig, PausePoint, Service, TransferRequest};

fn paused_at(point: PausePoint) -> ClusterConfig {
    let mut config = ClusterConfig::default().timed();
    config.gateway.pause_at = point;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_after_reserve_is_aborted_and_both_holds_released() {
    let mut cluster = Cluster::start(paused_at(PausePoint::AfterReserve)).await;
    scenarios::gateway_killed_at(&mut cluster, PausePoint::AfterReserve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_after_decision_is_confirmed_on_both_sides() {
    let mut cluster = Cluster::start(paused_at(PausePoint::AfterDecision)).await;
    scenarios::gateway_killed_at(&mut cluster, PausePoint::AfterDecision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_killed_mid_work_finishes_after_restart() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    let clients = cluster.clients().clone();
    // Confirms take longer than anyone waits: the gateway answers PROCESSING and the
    // reconciler keeps retrying.
    clients
        .inject_fault(Operation::Confirm, FaultKind::Latency, 5_000, 0)
        .await;
    let transfers = cluster.transfers();
    let mut keys = Vec::new();
    for (user, amount) in [("alice", 10_000), ("bob", 20_000), ("carol", 30_000)] {
        let req = TransferRequest::new(user, amount);
        let (t, elapsed) = transfers.approve_ok(&req).await;
        eprintln!("[e2e] answered in {elapsed:?}: {t:?}");
        assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");
        keys.push(req.key());
    }
    // Let the reconciler pick them up and get stuck in slow confirms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for key in &keys {
        let t = transfers.get_by_key(key).await.expect("GetTransfer");
        assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");
    }
    cluster.kill(Service::Reconciler);
    clients.clear_faults().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.restart(Service::Reconciler).await;

    for key in &keys {
        transfers
            .wait_for_status(key, TransferStatus::Succeeded, SETTLE_TIMEOUT)
            .await;
    }
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["int-alice"].available_minor_units, 10_000);
    assert_eq!(report.accounts["int-bob"].available_minor_units, 20_000);
    assert_eq!(report.accounts["int-carol"].available_minor_units, 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_store_down_fails_transfers_and_releases_the_external_hold() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    cluster.kill(Service::BalanceStore);
    let transfers = cluster.transfers();
    let (t, elapsed) = transfers
        .approve_ok(&TransferRequest::new("alice", 25_000))
        .await;
    eprintln!("[e2e] answered in {elapsed:?}: {t:?}");
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");

    // The abort is recorded; the external hold (if any) is released even though the
    // balance store cannot be told yet.
    let clients = cluster.clients().clone();
    let started = std::time::Instant::now();
    loop {
        let ext = clients
            .external_account("ext-alice")
            .await
            .expect("ext-alice");
        if ext.reserved_minor_units == 0 {
            assert_eq!(ext.available_minor_units, 100_000, "{ext:?}");
            break;
        }
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "the external hold was not released: {ext:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.restart(Service::BalanceStore).await;
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["int-alice"].available_minor_units, 0);
    // Transfers work again.
    let (ok, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 500))
        .await;
    assert_eq!(ok.status(), TransferStatus::Succeeded, "{ok:?}");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn institution_killed_after_commit_is_confirmed_once_everything_is_back() {
    let mut cluster = Cluster::start(paused_at(PausePoint::AfterDecision)).await;
    // No reconciler for now: nobody but the (paused) gateway may settle the transfer.
    cluster.kill(Service::Reconciler);
    let transfers = cluster.transfers();
    let req = TransferRequest::new("bob", 40_000);
    let in_flight = {
        let transfers = transfers.clone();
        let req = req.clone();
        tokio::spawn(async move { transfers.approve(&req).await })
    };
    cluster
        .wait_for_log(
            Service::Gateway,
            &PausePoint::AfterDecision.log_marker(),
            Duration::from_secs(10),
        )
        .await;
    // Commit recorded; now both the institution and the gateway die.
    cluster.kill(Service::External);
    cluster.kill(Service::Gateway);
    let _ = in_flight.await;
    cluster.config_mut().gateway.pause_at = PausePoint::None;
    cluster.restart(Service::Gateway).await;
    let t = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");

    cluster.restart(Service::External).await;
    let ext = cluster
        .clients()
        .external_account("ext-bob")
        .await
        .expect("ext-bob");
    assert_eq!(
        (ext.available_minor_units, ext.reserved_minor_units),
        (60_000, 40_000),
        "the hold survived the institution's crash"
    );
    cluster.restart(Service::Reconciler).await;
    transfers
        .wait_for_status(&req.key(), TransferStatus::Succeeded, SETTLE_TIMEOUT)
        .await;
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-bob"].available_minor_units, 60_000);
    assert_eq!(report.accounts["int-bob"].available_minor_units, 40_000);
    let r = cluster
        .clients()
        .external_reservation(&t.transfer_id)
        .await
        .expect("reservation");
    assert_eq!(r.status(), ReservationStatus::Confirmed);
}
