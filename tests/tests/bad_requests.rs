//! Malformed requests are INVALID_ARGUMENT and create nothing; unknown ids NOT_FOUND.

use banktransfer_e2e::{Auth, Cluster, ClusterConfig, TransferKey, TransferRequest};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_argument() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let mut cases: Vec<(&str, TransferRequest)> = Vec::new();
    cases.push(("zero amount", TransferRequest::new("alice", 0)));
    cases.push(("negative amount", TransferRequest::new("alice", -100)));
    let mut no_key = TransferRequest::new("alice", 100);
    no_key.idempotency_key = String::new();
    cases.push(("empty idempotency key", no_key));
    let mut no_user = TransferRequest::new("alice", 100);
    no_user.user_id = String::new();
    cases.push(("empty user", no_user));
    let mut bad_currency = TransferRequest::new("alice", 100);
    bad_currency.currency = "dollars".to_owned();
    cases.push(("bad currency", bad_currency));
    // alice is signed in: the request, not her token, is what is wrong.
    let alice = Auth::user("alice");
    for (what, req) in &cases {
        let err = transfers
            .approve_as(&alice, req)
            .await
            .expect_err(&format!("{what} must be refused"));
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }

    // No amount at all.
    let mut raw = TransferRequest::new("alice", 100).to_proto();
    raw.amount = None;
    let err = transfers
        .approve_message_as(&alice, raw)
        .await
        .expect_err("a request without an amount must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let report = cluster.assert_invariants().await;
    assert!(report.transfers.is_empty(), "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfers_are_not_found() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let err = transfers
        .get_by_id("alice", "00000000-0000-0000-0000-000000000000")
        .await
        .expect_err("unknown id");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = transfers
        .get_by_key(&TransferKey {
            user_id: "alice".into(),
            idempotency_key: "never-used".into(),
        })
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}
