//! Many transfers at once: one account is never overdrawn, and the books balance.

use banktransfer_e2e::scenarios;
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};
use banktransfer_proto::gateway::v1::TransferStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_transfers_never_overdraw_one_account() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    scenarios::concurrent_transfers_never_overdraw(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_users_in_parallel_keep_the_books_balanced() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let mut tasks = Vec::new();
    for user in ["alice", "bob", "carol"] {
        for i in 0..10 {
            let transfers = transfers.clone();
            tasks.push(tokio::spawn(async move {
                transfers
                    .approve(&TransferRequest::new(user, 1_000 + i))
                    .await
            }));
        }
    }
    for task in tasks {
        let _ = task.await.expect("task");
    }
    let report = cluster.assert_invariants().await;
    eprintln!(
        "[e2e] {} SUCCEEDED, {} FAILED",
        report.count(TransferStatus::Succeeded),
        report.count(TransferStatus::Failed)
    );
    assert!(
        report.count(TransferStatus::Succeeded) >= 1,
        "{}",
        report.render()
    );
}
