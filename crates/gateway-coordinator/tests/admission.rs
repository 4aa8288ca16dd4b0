//! ApproveTransfer's admission control over gRPC, in-process, with participants that hold
//! every reserve until the test releases them: past the limit, requests are refused at
//! once with RESOURCE_EXHAUSTED and a retry hint, and nothing is recorded for them; one
//! user's flood does not refuse another user; a replay of a live drive shares it.
//!
//! "At once" is shown without timing: each refusal arrives while the admitted drives are
//! still held at the participants' gate, so it cannot have waited for capacity.

mod common;

use std::sync::Arc;
use std::time::Duration;

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_protocol::transfer::Leg;
use common::{approve_request, open_store, spawn_gateway, status_of};
use coordinator::store::{SqlTransferStore, TransferStore};
use gateway_coordinator::Settings;
use gateway_coordinator::admission::RETRY_PUSHBACK_HEADER;
use testkit::participants::{FakeParticipants, Op};
use tonic::Status;

/// Generous bounds for waits that only a broken implementation exceeds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A roomy budget, and a concurrency limit fixed at `limit` (min = initial = max), so the
/// test knows exactly where capacity ends.
fn settings(limit: u32, per_user_in_flight_max: u32) -> Settings {
    let mut settings = Settings::default();
    settings.common.budget.total_ms = 5_000;
    settings.common.budget.after_reserve_ms = 2_000;
    settings.admission.limit_min = limit;
    settings.admission.limit_initial = limit;
    settings.admission.limit_max = limit;
    settings.admission.per_user_in_flight_max = per_user_in_flight_max;
    settings
}

/// Waits until `count` intents are recorded.
async fn wait_for_intents(store: &SqlTransferStore, count: usize) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while store.recent(100).await.unwrap().len() < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{count} intents were never recorded");
}

fn assert_refused_with_pushback(status: &Status, says: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(status.message().contains(says), "{}", status.message());
    assert!(
        status.message().contains("with the same idempotency key"),
        "{}",
        status.message()
    );
    let pushback_ms: u64 = status
        .metadata()
        .get(RETRY_PUSHBACK_HEADER)
        .expect("a refusal carries grpc-retry-pushback-ms")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=2_000).contains(&pushback_ms), "{pushback_ms}");
}

#[tokio::test]
async fn past_the_limit_requests_are_refused_at_once_and_nothing_is_recorded() {
    for test_db in testkit::db::all("admission_limit").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.close_reserve_gate(Leg::External);
        let mut gateway = spawn_gateway(settings(2, 16), store.clone(), fake.clone()).await;

        let mut held = Vec::new();
        for user in ["u1", "u2"] {
            let mut client = gateway.client.clone();
            held.push(tokio::spawn(async move {
                client
                    .approve_transfer(approve_request(user, "k1", 250))
                    .await
            }));
        }
        wait_for_intents(&store, 2).await;
        // Both legs of both drives have been asked to reserve (the external one is held).
        let reserving = tokio::time::timeout(PATIENCE, async {
            while fake.count_op(Op::Reserve) < 4 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        assert!(reserving.await.is_ok(), "the held drives never reserved");
        let calls_before = fake.calls().len();

        for user in ["u3", "u4", "u5", "u6", "u7"] {
            let refused = gateway
                .client
                .approve_transfer(approve_request(user, "k1", 250))
                .await
                .unwrap_err();
            assert_refused_with_pushback(&refused, "at capacity");
            assert!(
                store.find_by_key(user, "k1").await.unwrap().is_none(),
                "{:?}: an intent was recorded for a refused request",
                test_db.backend
            );
        }
        // The held drives are still held: the refusals did not wait for capacity.
        assert!(held.iter().all(|h| !h.is_finished()));
        assert_eq!(store.recent(100).await.unwrap().len(), 2);
        assert_eq!(
            fake.calls().len(),
            calls_before,
            "a refused request reached a participant"
        );

        fake.open_reserve_gate(Leg::External);
        for h in held {
            let transfer = h.await.unwrap().unwrap().into_inner().transfer.unwrap();
            assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
        }
        // Capacity is back: a refused request retried with the same key now succeeds.
        let retried = gateway
            .client
            .approve_transfer(approve_request("u3", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(status_of(&retried), TransferStatus::Succeeded);
        gateway.stop().await;
    }
}

#[tokio::test]
async fn one_users_flood_does_not_refuse_another_user() {
    for test_db in testkit::db::all("admission_user").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.close_reserve_gate(Leg::External);
        let mut gateway = spawn_gateway(settings(8, 2), store.clone(), fake.clone()).await;

        let mut held = Vec::new();
        for key in ["a1", "a2"] {
            let mut client = gateway.client.clone();
            held.push(tokio::spawn(async move {
                client
                    .approve_transfer(approve_request("alice", key, 250))
                    .await
            }));
        }
        wait_for_intents(&store, 2).await;
        for key in ["a3", "a4", "a5"] {
            let refused = gateway
                .client
                .approve_transfer(approve_request("alice", key, 250))
                .await
                .unwrap_err();
            assert_refused_with_pushback(&refused, "your transfers");
            assert!(store.find_by_key("alice", key).await.unwrap().is_none());
        }
        // Bob is admitted while alice's two are still held.
        let mut client = gateway.client.clone();
        let bob = tokio::spawn(async move {
            client
                .approve_transfer(approve_request("bob", "b1", 250))
                .await
        });
        wait_for_intents(&store, 3).await;
        assert!(store.find_by_key("bob", "b1").await.unwrap().is_some());
        assert!(held.iter().all(|h| !h.is_finished()));

        fake.open_reserve_gate(Leg::External);
        held.push(bob);
        for h in held {
            let transfer = h.await.unwrap().unwrap().into_inner().transfer.unwrap();
            assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
        }
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_replay_of_a_live_drive_shares_it_and_a_changed_replay_is_already_exists() {
    let test_db = testkit::db::sqlite("admission_replay");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    fake.close_reserve_gate(Leg::External);
    // A limit of one: the replay needs no drive slot of its own.
    let mut gateway = spawn_gateway(settings(1, 16), store.clone(), fake.clone()).await;

    let mut client = gateway.client.clone();
    let first = tokio::spawn(async move {
        client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
    });
    wait_for_intents(&store, 1).await;
    let mut client = gateway.client.clone();
    let replay = tokio::spawn(async move {
        client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
    });
    let changed = gateway
        .client
        .approve_transfer(approve_request("alice", "k1", 999))
        .await
        .unwrap_err();
    assert_eq!(
        changed.code(),
        tonic::Code::AlreadyExists,
        "{}",
        changed.message()
    );
    assert!(!first.is_finished() && !replay.is_finished());

    fake.open_reserve_gate(Leg::External);
    let first = first.await.unwrap().unwrap().into_inner().transfer.unwrap();
    let replay = replay
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(status_of(&first), TransferStatus::Succeeded);
    assert_eq!(replay, first);
    // One transfer, reserved once at each participant.
    assert_eq!(store.recent(10).await.unwrap().len(), 1);
    for leg in Leg::BOTH {
        assert_eq!(fake.count(leg, Op::Reserve, &first.transfer_id), 1);
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_deadline_shorter_than_the_expected_service_time_is_refused_before_its_intent() {
    let test_db = testkit::db::sqlite("admission_deadline");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    // Every drive takes at least a second: the expected service time.
    fake.script(Leg::External, |s| {
        s.reserve_delay = Duration::from_millis(1_000)
    });
    let mut gateway = spawn_gateway(settings(32, 16), store.clone(), fake.clone()).await;
    // Enough successful drives for an estimate (16), at once.
    let mut calls = Vec::new();
    for i in 0..20 {
        let mut client = gateway.client.clone();
        calls.push(tokio::spawn(async move {
            client
                .approve_transfer(approve_request(&format!("u{i}"), "k1", 250))
                .await
        }));
    }
    for call in calls {
        let transfer = call.await.unwrap().unwrap().into_inner().transfer.unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
    }

    // A client that will wait 250 ms cannot be served in a second: refused, not started.
    let mut short = tonic::Request::new(approve_request("late", "k1", 250));
    short.set_timeout(Duration::from_millis(250));
    let refused = gateway.client.approve_transfer(short).await.unwrap_err();
    assert_refused_with_pushback(&refused, "remaining deadline");
    assert!(store.find_by_key("late", "k1").await.unwrap().is_none());

    // The configured budget covers it.
    let served = gateway
        .client
        .approve_transfer(approve_request("late", "k1", 250))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(status_of(&served), TransferStatus::Succeeded);
    gateway.stop().await;
}
