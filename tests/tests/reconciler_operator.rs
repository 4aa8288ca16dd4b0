//! The reconciler's operator API: RunPass settles on demand what its schedule would have
//! settled later; Audit agrees with the participants. The services' own 200 ms budget
//! (`ClusterConfig::timed`), so that an undecided transfer turns stale within a second.

use std::time::Duration;

use banktransfer_api::external::v1::{FaultKind, Operation};
use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_api::reconciler::v1::{AuditRequest, RunPassRequest, RunPassResponse};
use banktransfer_e2e::clients::request;
use banktransfer_e2e::{Cluster, ClusterConfig, PausePoint, Service, TransferRequest};

/// A reconciler whose own schedule will not run during the test.
fn manual_reconciler() -> ClusterConfig {
    let mut config = ClusterConfig::default().timed();
    config.reconciler.pass_interval_ms = 60_000;
    config
}

async fn run_pass(cluster: &Cluster) -> RunPassResponse {
    cluster
        .clients()
        .reconciler
        .clone()
        .run_pass(request(RunPassRequest {}))
        .await
        .unwrap_or_else(|status| panic!("RunPass: {status:?}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pass_finishes_a_committed_transfer_on_demand() {
    let mut cluster = Cluster::start(manual_reconciler()).await;
    let clients = cluster.clients().clone();
    clients
        .inject_fault(Operation::Confirm, FaultKind::Unavailable, 0, 0)
        .await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 12_345);
    let (t, _) = transfers.approve_ok(&req).await;
    assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");

    let audit = clients
        .reconciler
        .clone()
        .audit(request(AuditRequest { limit: 0 }))
        .await
        .expect("Audit")
        .into_inner();
    assert!(audit.mismatches.is_empty(), "{audit:?}");
    assert_eq!(audit.transfers_unfinished, 1, "{audit:?}");

    // The reconciler looks at a transfer once the gateway's own budget is over.
    let budget = Duration::from_millis(cluster.config().budget.total_ms);
    tokio::time::sleep(budget + Duration::from_millis(100)).await;

    // Still failing: the pass retries and reports it unfinished.
    let pass = run_pass(&cluster).await;
    eprintln!("[e2e] pass while the confirm fails: {pass:?}");
    assert_eq!(pass.transfers_examined, 1, "{pass:?}");
    assert_eq!(pass.transfers_succeeded, 0, "{pass:?}");
    assert_eq!(pass.transfers_retrying, 1, "{pass:?}");

    clients.clear_faults().await;
    // Past the retry's backoff.
    let backoff = Duration::from_millis(cluster.config().reconciler.backoff_ms_max);
    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    let pass = run_pass(&cluster).await;
    eprintln!("[e2e] pass after clearing the fault: {pass:?}");
    assert_eq!(pass.transfers_examined, 1, "{pass:?}");
    assert_eq!(pass.transfers_succeeded, 1, "{pass:?}");
    let done = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(done.status(), TransferStatus::Succeeded, "{done:?}");

    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["int-alice"].available_minor_units, 12_345);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pass_aborts_a_stale_undecided_transfer() {
    let mut config = manual_reconciler();
    config.gateway.pause_at = PausePoint::AfterReserve;
    let mut cluster = Cluster::start(config).await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let in_flight = {
        let transfers = transfers.clone();
        let req = req.clone();
        tokio::spawn(async move { transfers.approve(&req).await })
    };
    cluster
        .wait_for_log(
            Service::Gateway,
            &PausePoint::AfterReserve.log_marker(),
            Duration::from_secs(10),
        )
        .await;
    cluster.kill(Service::Gateway);
    let _ = in_flight.await;
    cluster.config_mut().gateway.pause_at = PausePoint::None;
    cluster.restart(Service::Gateway).await;

    // Undecided, and not stale yet.
    let t = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(t.status(), TransferStatus::Processing, "{t:?}");
    let abort_after = Duration::from_millis(cluster.config().budget.stale_after_ms());
    tokio::time::sleep(abort_after + Duration::from_millis(200)).await;

    let pass = run_pass(&cluster).await;
    eprintln!("[e2e] pass: {pass:?}");
    assert_eq!(pass.transfers_aborted, 1, "{pass:?}");
    let t = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");

    // The schedule is off: release anything left with one more pass, then check.
    let _ = run_pass(&cluster).await;
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 100_000);
    assert_eq!(report.accounts["int-alice"].reserved_minor_units, 0);
}
