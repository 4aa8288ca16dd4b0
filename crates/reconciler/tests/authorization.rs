//! The operator API is the operator's alone: RunPass finishes or aborts transfers and
//! Audit reads every participant's reservations, so without a client certificate they
//! answer UNAUTHENTICATED, to any other identity (the coordinator's included)
//! PERMISSION_DENIED, and a refused RunPass drives nothing.

mod common;

use std::sync::Arc;

use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_api::reconciler::v1::{AuditRequest, RunPassRequest};
use banktransfer_protocol::transfer::RecordedState;
use common::{GATEWAY, RECONCILER, intent, now_ms, open_store, spawn_reconciler};
use coordinator::store::TransferStore;
use service_kit::clock::SystemClock;
use testkit::participants::FakeParticipants;
use testkit::pki::TestPki;
use tonic::Code;

#[tokio::test]
async fn run_pass_and_audit_are_served_only_to_the_operator() {
    let test_db = testkit::db::sqlite("authz");
    let store = open_store(&test_db).await;
    let pki = TestPki::new();
    let fake = Arc::new(FakeParticipants::new());
    // Abandoned by its gateway long ago: any pass that runs aborts it.
    let stale = intent("alice", "k1", now_ms() - 60_000);
    store.insert_intent(&stale).await.unwrap();
    let mut reconciler = spawn_reconciler(
        &pki,
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        "r1",
    )
    .await;

    let refusals = [
        (None, Code::Unauthenticated),
        (Some(GATEWAY), Code::PermissionDenied),
        (Some(RECONCILER), Code::PermissionDenied),
        (Some("internal-balance-store"), Code::PermissionDenied),
    ];
    for (identity, code) in refusals {
        let channel = pki.channel(reconciler.addr, identity).await;
        let mut client = ReconcilerServiceClient::new(channel);
        let status = client.run_pass(RunPassRequest {}).await.unwrap_err();
        assert_eq!(status.code(), code, "RunPass as {identity:?}: {status:?}");
        let status = client.audit(AuditRequest { limit: 0 }).await.unwrap_err();
        assert_eq!(status.code(), code, "Audit as {identity:?}: {status:?}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let untouched = store.get(&stale.transfer_id).await.unwrap().unwrap();
    assert_eq!(untouched.state, RecordedState::Started);
    assert_eq!(untouched.lease_owner, None);

    // The operator's certificate may.
    let pass = reconciler
        .client
        .run_pass(RunPassRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pass.transfers_examined, 1, "{pass:?}");
    let audit = reconciler
        .client
        .audit(AuditRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.transfers_checked, 1, "{audit:?}");
    assert!(audit.mismatches.is_empty(), "{:?}", audit.mismatches);
    reconciler.stop().await;
}
