//! The reconciler's operator API in-process (called as the operator), next to an
//! in-process gateway (called as alice) over the same transfer log and the same scripted
//! participants.

mod common;

use std::sync::Arc;
use std::time::Duration;

use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, GetTransferRequest, TransferStatus, get_transfer_request,
};
use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reconciler::v1::{
    AuditRequest, Participant, RunPassRequest, UnmatchedReason,
};
use banktransfer_protocol::transfer::{Leg, RecordedState};
use common::{intent, now_ms, open_store, spawn_gateway, spawn_reconciler};
use coordinator::participants::ReservationView;
use coordinator::store::TransferStore;
use service_kit::clock::{ManualClock, SystemClock};
use testkit::participants::{FakeParticipants, FakeReserve};
use testkit::pki::TestPki;

/// Roomy: long enough for a loaded machine, for the tests that are not about budgets.
fn roomy_gateway() -> gateway_coordinator::Settings {
    let mut settings = gateway_coordinator::Settings::default();
    settings.common.budget.total_ms = 5_000;
    settings.common.budget.after_reserve_ms = 2_000;
    settings
}

fn approve_request(key: &str) -> ApproveTransferRequest {
    ApproveTransferRequest {
        idempotency_key: key.into(),
        user_id: "alice".into(),
        external_account_id: "ext-1".into(),
        internal_account_id: "int-1".into(),
        amount: Some(money_pb::Money {
            minor_units: 100,
            currency: "USD".into(),
        }),
    }
}

#[tokio::test]
async fn a_slow_confirm_answers_processing_then_the_reconciler_finishes_it() {
    for test_db in testkit::db::all("slowconfirm").await {
        let store = open_store(&test_db).await;
        let pki = TestPki::new();
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::External, |s| s.settle_delay = Duration::from_secs(30));
        let mut gateway = spawn_gateway(
            &pki,
            gateway_coordinator::Settings::default(),
            store.clone(),
            fake.clone(),
        )
        .await;
        let transfer = tokio::time::timeout(
            Duration::from_secs(2),
            gateway.client.approve_transfer(approve_request("k1")),
        )
        .await
        .expect("answered within the budget")
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
        assert_eq!(transfer.status, TransferStatus::Processing as i32);
        let id = transfer.transfer_id.clone();

        // The participant is back; the reconciler's clock is past the gateway's budget.
        fake.script(Leg::External, |s| s.settle_delay = Duration::ZERO);
        let clock = ManualClock::new(now_ms() + 1_000);
        let mut reconciler =
            spawn_reconciler(&pki, store.clone(), fake.clone(), Arc::new(clock), "r1").await;
        let pass = reconciler
            .client
            .run_pass(RunPassRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                pass.transfers_examined,
                pass.transfers_succeeded,
                pass.transfers_retrying
            ),
            (1, 1, 0),
            "{:?}",
            test_db.backend
        );
        let now = gateway
            .client
            .get_transfer(GetTransferRequest {
                lookup: Some(get_transfer_request::Lookup::TransferId(id.clone())),
            })
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(now.status, TransferStatus::Succeeded as i32);

        let audit = reconciler
            .client
            .audit(AuditRequest { limit: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(audit.transfers_checked, 1);
        assert_eq!(audit.transfers_unfinished, 0);
        assert!(audit.mismatches.is_empty(), "{:?}", audit.mismatches);
        assert!(audit.unmatched_reservations.is_empty(), "{audit:?}");
        assert!(audit.unexplained_balances.is_empty(), "{audit:?}");
        assert_eq!((audit.reservations_checked, audit.accounts_checked), (2, 2));
        reconciler.stop().await;
        gateway.stop().await;
    }
}

#[tokio::test]
async fn the_audit_reports_what_does_not_add_up() {
    for test_db in testkit::db::all("audit").await {
        let store = open_store(&test_db).await;
        let pki = TestPki::new();
        let fake = Arc::new(FakeParticipants::new());
        let mut gateway = spawn_gateway(&pki, roomy_gateway(), store.clone(), fake.clone()).await;
        let succeeded = gateway
            .client
            .approve_transfer(approve_request("ok"))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(succeeded.status, TransferStatus::Succeeded as i32);
        fake.script(Leg::External, |s| {
            s.reserve = FakeReserve::Refuse("insufficient funds".into())
        });
        let failed = gateway
            .client
            .approve_transfer(approve_request("refused"))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(failed.status, TransferStatus::Failed as i32);
        // An undecided one, still in its request's hands.
        store
            .insert_intent(&intent("alice", "live", now_ms()))
            .await
            .unwrap();

        let mut reconciler = spawn_reconciler(
            &pki,
            store.clone(),
            fake.clone(),
            Arc::new(SystemClock),
            "r1",
        )
        .await;
        let audit = reconciler
            .client
            .audit(AuditRequest { limit: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(audit.transfers_checked, 3, "{:?}", test_db.backend);
        assert_eq!(audit.transfers_unfinished, 1);
        assert!(audit.mismatches.is_empty(), "{:?}", audit.mismatches);
        assert!(audit.unmatched_reservations.is_empty(), "{audit:?}");
        assert!(audit.unexplained_balances.is_empty(), "{audit:?}");
        assert!(!audit.books_incomplete);

        // Money where the log says there is none, and none where it says there is.
        fake.set_reservation(
            Leg::BalanceStore,
            &succeeded.transfer_id,
            ReservationView::Held,
        );
        fake.set_reservation(
            Leg::External,
            &failed.transfer_id,
            ReservationView::Confirmed,
        );
        let audit = reconciler
            .client
            .audit(AuditRequest { limit: 10 })
            .await
            .unwrap()
            .into_inner();
        let mut found: Vec<(String, String)> = audit
            .mismatches
            .into_iter()
            .map(|m| (m.transfer_id, m.description))
            .collect();
        found.sort();
        let mut expected = vec![
            (
                succeeded.transfer_id.clone(),
                "succeeded but the balance store reservation is HELD".to_string(),
            ),
            (
                failed.transfer_id.clone(),
                "failed but the external institution reservation is CONFIRMED".to_string(),
            ),
        ];
        expected.sort();
        assert_eq!(found, expected);
        // The statuses changed under the reservations, the balances did not: neither
        // account's balances follow from its reservations any more.
        let mut unexplained: Vec<(Participant, String)> = audit
            .unexplained_balances
            .iter()
            .map(|u| {
                let account = u.statement.as_ref().unwrap().account.as_ref().unwrap();
                (u.participant(), account.account_id.clone())
            })
            .collect();
        unexplained.sort();
        assert_eq!(
            unexplained,
            [
                (Participant::ExternalInstitution, "ext-1".to_string()),
                (Participant::BalanceStore, "int-1".to_string()),
            ]
        );
        // The matched reservations still match their transfers.
        assert!(
            audit.unmatched_reservations.is_empty(),
            "{:?}",
            audit.unmatched_reservations
        );

        // A reserve and a confirm straight at the balance store, for no transfer.
        fake.set_reservation(Leg::BalanceStore, "steal-1", ReservationView::Confirmed);
        let audit = reconciler
            .client
            .audit(AuditRequest { limit: 10 })
            .await
            .unwrap()
            .into_inner();
        let stolen: Vec<(Participant, UnmatchedReason, String)> = audit
            .unmatched_reservations
            .iter()
            .map(|u| {
                let reservation = u.reservation.as_ref().unwrap();
                (u.participant(), u.reason(), reservation.transfer_id.clone())
            })
            .collect();
        assert_eq!(
            stolen,
            [(
                Participant::BalanceStore,
                UnmatchedReason::NoTransfer,
                "steal-1".to_string()
            )]
        );
        assert_eq!(audit.unexplained_balances.len(), 2, "{audit:?}");

        // Bounded.
        let one = reconciler
            .client
            .audit(AuditRequest { limit: 1 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.transfers_checked, 1);
        let err = reconciler
            .client
            .audit(AuditRequest { limit: 10_001 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        reconciler.stop().await;
        gateway.stop().await;
    }
}

#[tokio::test]
async fn shutdown_stops_the_schedule_and_releases_this_replicas_leases() {
    let test_db = testkit::db::sqlite("shutdown");
    let store = open_store(&test_db).await;
    let pki = TestPki::new();
    let fake = Arc::new(FakeParticipants::new());
    let t0 = now_ms();
    let new = intent("alice", "k1", t0 - 60_000);
    store.insert_intent(&new).await.unwrap();
    // Left over from this replica's previous life.
    assert!(
        store
            .claim(&new.transfer_id, "r-7", t0, t0 + 600_000)
            .await
            .unwrap()
    );

    let reconciler = spawn_reconciler(
        &pki,
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        "r-7",
    )
    .await;
    reconciler.stop().await;
    let record = store.get(&new.transfer_id).await.unwrap().unwrap();
    assert_eq!(record.lease_owner, None);
    assert_eq!(record.state, RecordedState::Started);
    assert!(fake.calls().is_empty(), "no pass ran");
}
