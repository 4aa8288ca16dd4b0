//! Idempotency on (user_id, idempotency_key): a replay returns the same transfer and
//! moves nothing more; the same key with different terms is ALREADY_EXISTS.

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_returns_the_same_transfer_and_moves_money_once() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let (first, _) = transfers.approve_ok(&req).await;
    assert_eq!(first.status(), TransferStatus::Succeeded, "{first:?}");
    for _ in 0..3 {
        let (again, _) = transfers.approve_ok(&req).await;
        assert_eq!(again.transfer_id, first.transfer_id, "{again:?}");
        assert_eq!(again.status(), TransferStatus::Succeeded, "{again:?}");
    }
    let report = cluster.assert_invariants().await;
    assert_eq!(report.transfers.len(), 1);
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 75_000);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 25_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_share_one_transfer() {
    // Eight requests at once queue on the transfer log's one writer; the patient default
    // budget lets them queue instead of racing a 200 ms clock on a loaded CI machine (a
    // burst is about safety here; latency is measured by `make bench`).
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 10_000);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let transfers = transfers.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move { transfers.approve(&req).await }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task");
        let t = answer.unwrap_or_else(|status| panic!("a replay was refused: {status:?}"));
        ids.push(t.transfer_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "replays got different transfers: {ids:?}");
    let report = cluster.assert_invariants().await;
    assert_eq!(report.transfers[0].1.status(), TransferStatus::Succeeded);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_key_with_a_different_amount_is_already_exists() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let req = TransferRequest::new("alice", 25_000);
    let (first, _) = transfers.approve_ok(&req).await;
    assert_eq!(first.status(), TransferStatus::Succeeded, "{first:?}");

    let mut different = req.clone();
    different.amount_minor = 30_000;
    let err = transfers
        .approve(&different)
        .await
        .expect_err("the same key with another amount must be refused");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    let mut other_account = req.clone();
    other_account.internal_account_id = "int-bob".to_owned();
    let err = transfers
        .approve(&other_account)
        .await
        .expect_err("the same key with another destination must be refused");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    let still = transfers.get_by_key(&req.key()).await.expect("GetTransfer");
    assert_eq!(still.transfer_id, first.transfer_id);
    assert_eq!(still.amount.expect("amount").minor_units, 25_000);

    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 75_000);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 25_000);
    assert_eq!(report.accounts["int-bob"].available_minor_units, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_per_user() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let alice = TransferRequest::new("alice", 1_000);
    let mut bob = TransferRequest::new("bob", 2_000);
    bob.idempotency_key = alice.idempotency_key.clone();
    let (a, _) = transfers.approve_ok(&alice).await;
    let (b, _) = transfers.approve_ok(&bob).await;
    assert_ne!(a.transfer_id, b.transfer_id);
    assert_eq!(a.status(), TransferStatus::Succeeded, "{a:?}");
    assert_eq!(b.status(), TransferStatus::Succeeded, "{b:?}");
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["int-alice"].available_minor_units, 1_000);
    assert_eq!(report.accounts["int-bob"].available_minor_units, 2_000);
}
