//! The plain successful transfer, and a few users in a row.

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::scenarios;
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_moves_250_into_her_account() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    scenarios::happy_path(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_users_in_sequence_each_get_exactly_their_money() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    for (user, amount) in [
        ("alice", 10_000),
        ("bob", 2_500),
        ("carol", 99_999),
        ("alice", 1),
    ] {
        let (t, _) = transfers
            .approve_ok(&TransferRequest::new(user, amount))
            .await;
        assert_eq!(t.status(), TransferStatus::Succeeded, "{t:?}");
    }
    let report = cluster.assert_invariants().await;
    assert_eq!(report.accounts["int-alice"].available_minor_units, 10_001);
    assert_eq!(
        report.accounts["ext-alice"].available_minor_units,
        100_000 - 10_001
    );
    assert_eq!(report.accounts["int-bob"].available_minor_units, 2_500);
    assert_eq!(report.accounts["int-carol"].available_minor_units, 99_999);
    assert_eq!(report.accounts["int-mallory"].available_minor_units, 0);
}
