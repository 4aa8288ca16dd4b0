use banktransfer_e2e::*;
use banktransfer_proto::external::v1::{FaultKind, Operation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() {
    let mut config = ClusterConfig::default();
    config.bin_dir = Some("/tmp/mixbin".into());
    config.rules.rate_limit_max_reserves = 3;
    let cluster = Cluster::start(config).await;
    let transfers = cluster.transfers();
    let c = cluster.clients().clone();
    let req = TransferRequest::new("alice", 150_000);
    println!("insufficient {:?}", transfers.approve(&req).await);
    let mut r2 = req.clone();
    r2.amount_minor = 1;
    println!("reuse {:?}", transfers.approve(&r2).await);
    println!(
        "bad {:?}",
        transfers.approve(&TransferRequest::new("alice", 0)).await
    );
    c.inject_fault(Operation::Reserve, FaultKind::LoseReply, 0, 1)
        .await;
    let (t, el) = transfers
        .approve_ok(&TransferRequest::new("bob", 100))
        .await;
    println!("lose reply {el:?} {t:?}");
    println!("{:?}", c.external_reservation(&t.transfer_id).await);
    println!("{:?}", c.external_account("ext-bob").await);
    c.inject_fault(Operation::Confirm, FaultKind::Unavailable, 0, 0)
        .await;
    let (t, el) = transfers
        .approve_ok(&TransferRequest::new("bob", 100))
        .await;
    println!("confirm unavailable {el:?} {t:?}");
    c.clear_faults().await;
    for _ in 0..3 {
        let (t, el) = transfers
            .approve_ok(&TransferRequest::new("alice", 100))
            .await;
        println!("rl {el:?} {t:?}");
    }
    println!("{}", cluster.log_tail(Service::Gateway, 30));
    println!("{}", cluster.log_tail(Service::External, 30));
}
