//! Graceful shutdown: SIGTERM makes every service exit 0 within its grace, an in-flight
//! request is answered, and everything recorded survives a restart.

use std::time::Duration;

use banktransfer_api::external::v1::{FaultKind, Operation};
use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::{Cluster, ClusterConfig, Service, TransferRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_service_cleanly_and_state_survives_a_restart() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let (t, _) = transfers.approve_ok(&req).await;
    assert_eq!(t.status(), TransferStatus::Succeeded, "{t:?}");
    cluster.assert_invariants().await;

    let grace = Duration::from_millis(cluster.config().server.shutdown_grace_ms);
    for service in [
        Service::Reconciler,
        Service::Gateway,
        Service::BalanceStore,
        Service::External,
    ] {
        let started = std::time::Instant::now();
        let status = cluster.terminate(service).await;
        let took = started.elapsed();
        assert!(
            status.success(),
            "{service} exited with {status} after SIGTERM\n{}",
            cluster.log_tail(service, 30)
        );
        assert!(
            took <= grace + Duration::from_secs(1),
            "{service} took {took:?} to stop (grace {grace:?})"
        );
    }

    for service in [
        Service::External,
        Service::BalanceStore,
        Service::Gateway,
        Service::Reconciler,
    ] {
        cluster.restart(service).await;
    }
    let again = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(again.transfer_id, t.transfer_id);
    assert_eq!(again.status(), TransferStatus::Succeeded);
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 75_000);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 25_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_transfer_finish() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let clients = cluster.clients().clone();
    // The reserve takes a while, so that the request is in flight at the signal.
    clients
        .inject_fault(Operation::Reserve, FaultKind::Latency, 100, 1)
        .await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 5_000);
    let in_flight = {
        let transfers = transfers.clone();
        let req = req.clone();
        tokio::spawn(async move { transfers.approve(&req).await })
    };
    // The slow reserve has started: the request is inside the gateway.
    clients.wait_faults_fired(Duration::from_secs(5)).await;
    let status = cluster.terminate(Service::Gateway).await;
    assert!(status.success(), "gateway exited with {status}");
    let answer = in_flight.await.expect("task");
    let t = answer.unwrap_or_else(|status| {
        panic!("the in-flight request was dropped instead of answered: {status:?}")
    });
    eprintln!("[e2e] the in-flight request got {t:?}");
    assert_ne!(t.status(), TransferStatus::Processing, "{t:?}");

    cluster.restart(Service::Gateway).await;
    cluster.assert_invariants().await;
}
