//! Many transfers at once: one account is never overdrawn, and the books balance.
//!
//! With the patient default budget the bursts queue and must get through (exactly 20 of
//! 40 when funds run out); with the services' own 200 ms budget (`timed`) only safety is
//! required, since a burst on a small machine can miss it entirely (reported loudly, not
//! failed).

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::scenarios;
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_transfers_never_overdraw_one_account() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    scenarios::concurrent_transfers_never_overdraw(&mut cluster, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_transfers_within_the_default_budget_stay_safe() {
    let mut cluster = Cluster::start(ClusterConfig::default().timed()).await;
    scenarios::concurrent_transfers_never_overdraw(&mut cluster, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_users_in_parallel_all_get_their_money() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let mut tasks = Vec::new();
    let mut expected = [0i64; 3];
    for (u, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        for i in 0..10 {
            let amount = 1_000 + i;
            expected[u] += amount;
            let transfers = transfers.clone();
            tasks.push(tokio::spawn(async move {
                transfers.approve(&TransferRequest::new(user, amount)).await
            }));
        }
    }
    for task in tasks {
        let answer = task.await.expect("task");
        let t = answer.unwrap_or_else(|status| panic!("ApproveTransfer failed: {status:?}"));
        assert_ne!(t.status(), TransferStatus::Failed, "{t:?}");
    }
    let report = cluster.assert_invariants().await;
    assert_eq!(
        report.count(TransferStatus::Succeeded),
        30,
        "{}",
        report.render()
    );
    for (u, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        assert_eq!(
            report.accounts[&format!("int-{user}")].available_minor_units,
            expected[u]
        );
    }
}
