//! Scenarios shared by more than one test file (the SQLite suite and the PostgreSQL
//! one). Each starts from a running cluster and ends by asserting the invariants.

use std::time::Duration;

use banktransfer_api::gateway::v1::{Transfer, TransferStatus};

use crate::clients::TransferRequest;
use crate::cluster::Cluster;
use crate::config::PausePoint;
use crate::service::Service;

/// How long the reconciler gets to settle a transfer it has to take over.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// alice moves 250.00 from ext-alice (1000.00) to int-alice: SUCCEEDED at once.
pub async fn happy_path(cluster: &mut Cluster) {
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let (t, elapsed) = transfers.approve_ok(&req).await;
    eprintln!("[e2e] ApproveTransfer answered in {elapsed:?}: {t:?}");
    assert_eq!(t.status(), TransferStatus::Succeeded, "{t:?}");
    assert!(t.failure_reason.is_empty(), "{t:?}");
    assert!(!t.transfer_id.is_empty(), "{t:?}");
    assert_eq!(t.idempotency_key, req.idempotency_key);
    assert_eq!(t.user_id, "alice");
    assert_eq!(t.external_account_id, "ext-alice");
    assert_eq!(t.internal_account_id, "int-alice");
    let amount = t.amount.clone().expect("amount echoed");
    assert_eq!(
        (amount.minor_units, amount.currency.as_str()),
        (25_000, "USD")
    );

    let by_id = transfers
        .get_by_id("alice", &t.transfer_id)
        .await
        .expect("GetTransfer by id");
    let by_key = transfers
        .get_by_key(&req.key())
        .await
        .expect("GetTransfer by key");
    assert_eq!(by_id.transfer_id, t.transfer_id);
    assert_eq!(by_key.transfer_id, t.transfer_id);
    assert_eq!(by_id.status(), TransferStatus::Succeeded);

    let report = cluster.assert_invariants().await;
    let ext = &report.accounts["ext-alice"];
    assert_eq!(
        (
            ext.available_minor_units,
            ext.reserved_minor_units,
            ext.confirmed_minor_units
        ),
        (75_000, 0, 25_000),
        "ext-alice"
    );
    let int = &report.accounts["int-alice"];
    assert_eq!(
        (
            int.available_minor_units,
            int.reserved_minor_units,
            int.confirmed_minor_units
        ),
        (25_000, 0, 25_000),
        "int-alice"
    );
    let bob = &report.accounts["ext-bob"];
    assert_eq!(bob.available_minor_units, 100_000, "bob is untouched");
}

/// Starts a transfer with the gateway set to pause at `point`, SIGKILLs the gateway
/// there, restarts it without the pause, and waits for the reconciler to settle the
/// transfer: FAILED (both holds released) after `AfterReserve`, SUCCEEDED after
/// `AfterDecision`.
pub async fn gateway_killed_at(cluster: &mut Cluster, point: PausePoint) {
    assert_ne!(point, PausePoint::None);
    assert_eq!(
        cluster.config().gateway.pause_at,
        point,
        "start the cluster with the gateway's pause point set"
    );
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
            &point.log_marker(),
            Duration::from_secs(10),
        )
        .await;

    // Both holds are in place while the gateway sits at the fault point (after the
    // decision, the reconciler may already have confirmed them: it finishes committed
    // transfers without waiting for their driver).
    let clients = cluster.clients().clone();
    let ext = clients
        .external_account("ext-alice")
        .await
        .expect("ext-alice");
    let int = clients
        .internal_account("int-alice")
        .await
        .expect("int-alice");
    assert_eq!(
        ext.available_minor_units, 75_000,
        "the funds are held at {point:?}: {ext:?}"
    );
    assert_eq!(
        ext.reserved_minor_units + ext.confirmed_minor_units,
        25_000,
        "at {point:?}: {ext:?}"
    );
    assert_eq!(
        int.reserved_minor_units + int.confirmed_minor_units,
        25_000,
        "the pending credit is in place at {point:?}: {int:?}"
    );
    if point == PausePoint::AfterReserve {
        assert_eq!(ext.reserved_minor_units, 25_000, "undecided: still a hold");
    }

    cluster.kill(Service::Gateway);
    let answer = in_flight.await.expect("request task");
    eprintln!("[e2e] the in-flight ApproveTransfer got: {answer:?}");
    assert!(
        answer.is_err(),
        "the gateway was killed before answering, yet it answered {answer:?}"
    );

    cluster.config_mut().gateway.pause_at = PausePoint::None;
    cluster.restart(Service::Gateway).await;

    let expected = match point {
        PausePoint::AfterReserve => TransferStatus::Failed,
        _ => TransferStatus::Succeeded,
    };
    let t = transfers
        .wait_for_status(&req.key(), expected, SETTLE_TIMEOUT)
        .await;
    eprintln!("[e2e] settled by the reconciler: {t:?}");

    let report = cluster.assert_invariants().await;
    let (ext_available, balance_store_available) = match expected {
        TransferStatus::Failed => (100_000, 0),
        _ => (75_000, 25_000),
    };
    assert_eq!(
        report.accounts["ext-alice"].available_minor_units,
        ext_available
    );
    assert_eq!(
        report.accounts["int-alice"].available_minor_units,
        balance_store_available
    );
}

/// 40 concurrent transfers of 50.00 from ext-alice holding 1000.00: at most 20 succeed
/// (exactly 20 when the only refusals are for insufficient funds), the others fail, and
/// the account is never overdrawn (sampled while they run). With `require_progress`, at
/// least one must succeed: keep the cluster's patient default budget
/// ([`crate::config::Budget::PATIENT`]) so that the burst queues instead of timing out.
pub async fn concurrent_transfers_never_overdraw(cluster: &mut Cluster, require_progress: bool) {
    const N: usize = 40;
    const AMOUNT: i64 = 5_000;
    let opening = 100_000;
    let transfers = cluster.transfers();
    let clients = cluster.clients().clone();
    // Warm the services' connection pools, as in steady state.
    let (warm, _) = transfers.approve_ok(&TransferRequest::new("bob", 1)).await;
    assert_eq!(warm.status(), TransferStatus::Succeeded, "{warm:?}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut samples = 0u32;
        let mut bad = Vec::new();
        while !*stop_rx.borrow() {
            if let Ok(a) = clients.external_account("ext-alice").await {
                samples += 1;
                let total =
                    a.available_minor_units + a.reserved_minor_units + a.confirmed_minor_units;
                if a.available_minor_units < 0 || a.reserved_minor_units < 0 || total != opening {
                    bad.push(format!("{a:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (samples, bad)
    });

    let mut tasks = Vec::new();
    for _ in 0..N {
        let transfers = transfers.clone();
        tasks.push(tokio::spawn(async move {
            let req = TransferRequest::new("alice", AMOUNT);
            (req.key(), transfers.approve(&req).await)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("transfer task"));
    }
    let errors: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
    eprintln!(
        "[e2e] {} of {N} calls answered with an error: {errors:?}",
        errors.len()
    );

    let report = cluster.assert_invariants().await;
    stop_tx.send(true).expect("stop the sampler");
    let (samples, bad) = sampler.await.expect("sampler");
    assert!(
        bad.is_empty(),
        "ext-alice was seen overdrawn or unbalanced while transfers ran: {bad:?}"
    );
    eprintln!("[e2e] sampled ext-alice {samples} times while the transfers ran");

    let alice: Vec<&Transfer> = report
        .transfers
        .iter()
        .filter(|(key, _)| key.user_id == "alice")
        .map(|(_, t)| t)
        .collect();
    let succeeded = alice
        .iter()
        .filter(|t| t.status() == TransferStatus::Succeeded)
        .count();
    let failed: Vec<&str> = alice
        .iter()
        .filter(|t| t.status() == TransferStatus::Failed)
        .map(|t| t.failure_reason.as_str())
        .collect();
    eprintln!(
        "[e2e] {succeeded} SUCCEEDED, {} FAILED of {N}; reasons: {:?}",
        failed.len(),
        distinct(&failed)
    );
    assert_eq!(
        succeeded + failed.len(),
        N,
        "every transfer is recorded and final"
    );
    assert!(
        succeeded <= 20,
        "{succeeded} transfers of 50.00 succeeded from 1000.00"
    );
    // Refused only for want of funds: then no hold was ever released, so the funds ran
    // out exactly.
    if failed
        .iter()
        .all(|reason| reason.to_lowercase().contains("insufficient funds"))
    {
        assert_eq!(
            succeeded, 20,
            "only insufficient funds refused, yet funds remain"
        );
    }
    if require_progress {
        assert!(
            succeeded >= 1,
            "not one transfer succeeded:\n{}",
            report.render()
        );
    } else if succeeded == 0 {
        eprintln!(
            "\n!!!!!!!!!! NOTE: not one of {N} concurrent transfers succeeded within the budget \
             (contention on one account); safety holds, liveness under this load does not. !!!!!!!!!!\n"
        );
    }
    let ext = &report.accounts["ext-alice"];
    assert_eq!(
        ext.available_minor_units,
        opening - AMOUNT * succeeded as i64,
        "ext-alice paid exactly for the successes"
    );
    assert!(ext.available_minor_units >= 0);
}

/// Each distinct reason once, in order of first appearance.
fn distinct<'a>(reasons: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for reason in reasons {
        if !out.contains(reason) {
            out.push(reason);
        }
    }
    out
}
