//! The TransferService over gRPC, in-process, on every back end, with scripted
//! participants: the protocol's promises as a client and the participants see them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, GetTransferRequest, IdempotencyKeyLookup, Transfer, TransferStatus,
    get_transfer_request,
};
use banktransfer_protocol::transfer::ClientStatus;
use banktransfer_protocol::transfer::{Leg, RecordedState};
use common::{approve_request, intent, now_ms, open_store, spawn_gateway, status_of};
use coordinator::driver::{Answered, Deadlines, Driver};
use coordinator::participants::Participants;
use coordinator::participants::ReservationView;
use coordinator::pause::PausePoints;
use coordinator::store::{Intent, SqlTransferStore, TransferRecord, TransferStore};
use gateway_coordinator::Settings;
use gateway_coordinator::convert::TransferRequest;
use service_kit::clock::SystemClock;
use testkit::participants::{FakeParticipants, FakeReserve, Op};

/// Generous bounds for waits that only a broken implementation exceeds.
const PATIENCE: Duration = Duration::from_secs(5);

/// A budget long enough for a test to look around while a call is held up, and for a
/// loaded machine: tests that are not about the budget use it.
fn roomy_settings() -> Settings {
    let mut settings = Settings::default();
    settings.common.budget.total_ms = 5_000;
    settings.common.budget.after_reserve_ms = 2_000;
    settings
}

/// The reconciler's half of the driver, as a test runs it by hand.
fn recovery(
    store: &Arc<SqlTransferStore>,
    fake: &Arc<FakeParticipants>,
) -> Driver<SqlTransferStore, FakeParticipants> {
    Driver::new(
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        PausePoints::off(),
    )
}

/// The fingerprint the gateway records for `request`.
fn fingerprint_of(request: ApproveTransferRequest) -> String {
    TransferRequest::parse(request, Settings::default().amount_minor_max)
        .unwrap()
        .fingerprint()
}

fn recovery_deadlines() -> Deadlines {
    Deadlines::recovery(now_ms(), 5_000)
}

/// GetTransfer of alice's `transfer_id`.
async fn get_by_id(gateway: &common::Gateway, transfer_id: &str) -> Transfer {
    try_get_by_id(gateway, transfer_id).await.unwrap()
}

async fn try_get_by_id(
    gateway: &common::Gateway,
    transfer_id: &str,
) -> Result<Transfer, tonic::Status> {
    let response = gateway
        .client
        .clone()
        .get_transfer_as(
            "alice",
            GetTransferRequest {
                lookup: Some(get_transfer_request::Lookup::TransferId(
                    transfer_id.to_owned(),
                )),
            },
        )
        .await?;
    Ok(response.into_inner().transfer.unwrap())
}

/// The record of `transfer_id` once it is final (the outcome's write follows the answer).
async fn recorded_final(store: &SqlTransferStore, transfer_id: &str) -> TransferRecord {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        let record = store.get(transfer_id).await.unwrap().unwrap();
        if record.state.is_final() {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{transfer_id} is still {}",
            record.state.as_str()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_success_is_answered_before_its_outcome_is_recorded_and_reads_the_same_meanwhile() {
    for test_db in testkit::db::all("answered").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let driver = recovery(&store, &fake);
        let new = intent("alice", "k1", 250, now_ms());
        let Intent::Created(record) = store.insert_intent(&new).await.unwrap() else {
            panic!("a fresh key");
        };
        let Answered { driven, rest } = driver.begin_answering(record, recovery_deadlines()).await;
        let rest = rest.expect("the outcome's write is left to do");
        assert_eq!(driven.record.state, RecordedState::Succeeded);
        assert!(driven.store_error.is_none());
        for leg in Leg::BOTH {
            assert_eq!(
                fake.reservation(leg, &new.transfer_id),
                ReservationView::Confirmed
            );
        }
        // Until the rest runs, the log says committed, and a read finds the legs' confirms.
        let logged = store.get(&new.transfer_id).await.unwrap().unwrap();
        assert_eq!(logged.state, RecordedState::Committed);
        let read = driver
            .as_read(logged, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(read.state, RecordedState::Succeeded);
        // The write leaves the row the client was answered with.
        let finished = driver.finish(rest).await;
        assert!(finished.store_error.is_none());
        assert_eq!(finished.record, driven.record);
        assert_eq!(
            store.get(&new.transfer_id).await.unwrap().unwrap(),
            driven.record
        );
    }
}

#[tokio::test]
async fn happy_path_succeeds_and_confirms_only_after_the_commit_is_recorded() {
    for test_db in testkit::db::all("happy").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        fake.close_settle_gate(Leg::External);
        fake.close_settle_gate(Leg::BalanceStore);

        let mut client = gateway.client.clone();
        let call = tokio::spawn(async move {
            client
                .approve_transfer(approve_request("alice", "k1", 250))
                .await
        });
        // Both confirms are in flight and held at the gate: the commit must already be
        // durable.
        let give_up = tokio::time::Instant::now() + PATIENCE;
        let record = loop {
            let recent = store.recent(1).await.unwrap();
            if let Some(record) = recent.into_iter().next()
                && fake.count(Leg::External, Op::Confirm, &record.transfer_id) > 0
            {
                break record;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "no confirm in flight"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(
            fake.wait_for_call(
                Leg::BalanceStore,
                Op::Confirm,
                &record.transfer_id,
                PATIENCE
            )
            .await
        );
        let now = store.get(&record.transfer_id).await.unwrap().unwrap();
        assert_eq!(now.state, RecordedState::Committed, "{:?}", test_db.backend);
        fake.open_settle_gate(Leg::External);
        fake.open_settle_gate(Leg::BalanceStore);

        let transfer = call.await.unwrap().unwrap().into_inner().transfer.unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
        assert_eq!(transfer.transfer_id, record.transfer_id);
        assert!(
            uuid::Uuid::parse_str(&transfer.transfer_id)
                .unwrap()
                .get_version_num()
                == 7
        );
        assert_eq!(transfer.failure_reason, "");
        assert_eq!(transfer.amount.unwrap().minor_units, 250);
        let id = &transfer.transfer_id;
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Reserve, id), 1);
            assert_eq!(fake.count(leg, Op::Confirm, id), 1);
            assert_eq!(fake.count(leg, Op::Cancel, id), 0);
            assert_eq!(fake.reservation(leg, id), ReservationView::Confirmed);
        }
        // The answer did not wait for the outcome's write, which lands right after it
        // as the row the client was answered with.
        let stored = recorded_final(&store, id).await;
        assert_eq!(stored.state, RecordedState::Succeeded);
        assert_eq!(stored.updated_at_ms as i64, transfer.updated_at_ms);

        // GetTransfer finds it both ways.
        let by_id = gateway
            .client
            .get_transfer_as(
                "alice",
                GetTransferRequest {
                    lookup: Some(get_transfer_request::Lookup::TransferId(id.clone())),
                },
            )
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(status_of(&by_id), TransferStatus::Succeeded);
        let by_key = gateway
            .client
            .get_transfer_as(
                "alice",
                GetTransferRequest {
                    lookup: Some(get_transfer_request::Lookup::IdempotencyKey(
                        IdempotencyKeyLookup {
                            user_id: "alice".into(),
                            idempotency_key: "k1".into(),
                        },
                    )),
                },
            )
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(by_key, by_id);
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_refusal_fails_the_transfer_and_cancels_both_legs() {
    for test_db in testkit::db::all("refusal").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::BalanceStore, |s| {
            s.reserve = FakeReserve::Refuse("antifraud: velocity".into())
        });
        let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        let transfer = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Failed);
        assert!(
            transfer
                .failure_reason
                .contains("balance store refused: antifraud: velocity"),
            "{}",
            transfer.failure_reason
        );
        let id = &transfer.transfer_id;
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Cancel, id), 1, "{leg:?}");
            assert_eq!(fake.count(leg, Op::Confirm, id), 0, "{leg:?}");
        }
        // The hold is released; the refusal stays a refusal (a cancel changes nothing
        // there, as at the real participants).
        assert_eq!(
            fake.reservation(Leg::External, id),
            ReservationView::Cancelled
        );
        assert_eq!(
            fake.reservation(Leg::BalanceStore, id),
            ReservationView::Refused
        );
        assert_eq!(fake.balance(Leg::External, "ext-1").reserved_minor, 0);
        assert_eq!(fake.balance(Leg::BalanceStore, "int-1").reserved_minor, 0);
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Failed
        );
        gateway.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_reserve_answer_fails_the_transfer() {
    for test_db in testkit::db::all("unknown").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::External, |s| {
            s.reserve = FakeReserve::Fail("connection reset".into())
        });
        let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        let transfer = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Failed);
        assert!(
            transfer
                .failure_reason
                .contains("did not answer the reserve"),
            "{}",
            transfer.failure_reason
        );
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Confirm, &transfer.transfer_id), 0);
            assert_ne!(
                fake.reservation(leg, &transfer.transfer_id),
                ReservationView::Held
            );
        }
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_slow_participant_fails_the_transfer_within_the_budget() {
    for test_db in testkit::db::all("slowreserve").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::External, |s| s.reserve_delay = Duration::from_secs(30));
        let mut gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;

        // The default budget is 200 ms; waiting for the participant would take 30 s.
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            gateway
                .client
                .approve_transfer(approve_request("alice", "k1", 250)),
        )
        .await
        .expect("answered within the budget")
        .unwrap();
        let transfer = answer.into_inner().transfer.unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Failed);
        assert!(
            transfer.failure_reason.contains("external institution"),
            "{}",
            transfer.failure_reason
        );
        let id = &transfer.transfer_id;
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!(stored.state.client_status(), ClientStatus::Failed);
        // Cancels the budget had no room for are the reconciler's job.
        if stored.state == RecordedState::Aborted {
            recovery(&store, &fake)
                .resume(stored, None, recovery_deadlines())
                .await;
        }
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Failed
        );
        // Nothing is held anywhere: the late reserve meets a tombstone.
        for leg in Leg::BOTH {
            assert_ne!(fake.reservation(leg, id), ReservationView::Held, "{leg:?}");
            assert_eq!(fake.count(leg, Op::Confirm, id), 0, "{leg:?}");
        }
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_shorter_client_deadline_shrinks_the_budget() {
    let test_db = testkit::db::sqlite("clientdeadline");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    fake.script(Leg::BalanceStore, |s| {
        s.reserve_delay = Duration::from_secs(30)
    });
    // A budget far longer than the client waits: only the client's deadline can make
    // the gateway answer before the client gives up.
    let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
    let mut request = tonic::Request::new(approve_request("alice", "k1", 250));
    request.set_timeout(Duration::from_millis(300));
    let transfer = gateway
        .client
        .approve_transfer(request)
        .await
        .expect("answered before the client's own deadline")
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(status_of(&transfer), TransferStatus::Failed);
    gateway.stop().await;
}

#[tokio::test]
async fn a_slow_confirm_answers_processing_and_recovery_finishes_it() {
    for test_db in testkit::db::all("slowconfirm").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::External, |s| s.settle_delay = Duration::from_secs(30));
        let mut gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;
        let transfer = tokio::time::timeout(
            Duration::from_secs(2),
            gateway
                .client
                .approve_transfer(approve_request("alice", "k1", 250)),
        )
        .await
        .expect("answered within the budget")
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
        assert_eq!(status_of(&transfer), TransferStatus::Processing);
        let id = transfer.transfer_id.clone();
        let record = store.get(&id).await.unwrap().unwrap();
        assert_eq!(record.state, RecordedState::Committed);
        // GetTransfer reads the legs of a committed transfer: one is not confirmed, so
        // no one was told SUCCEEDED, whether or not the other leg can be read.
        assert_eq!(
            status_of(&get_by_id(&gateway, &id).await),
            TransferStatus::Processing
        );
        fake.script(Leg::BalanceStore, |s| s.reads_fail = true);
        assert_eq!(
            status_of(&get_by_id(&gateway, &id).await),
            TransferStatus::Processing
        );
        fake.script(Leg::BalanceStore, |s| s.reads_fail = false);

        // Both legs confirmed while the log still says committed, as when a gateway that
        // answered SUCCEEDED died before the outcome's write landed: read as SUCCEEDED.
        fake.script(Leg::External, |s| s.settle_delay = Duration::ZERO);
        fake.confirm(Leg::External, &id, Duration::from_secs(1))
            .await
            .unwrap();
        let read = get_by_id(&gateway, &id).await;
        assert_eq!(status_of(&read), TransferStatus::Succeeded);
        assert_eq!(read.updated_at_ms, record.updated_at_ms as i64);
        assert_eq!(
            store.get(&id).await.unwrap().unwrap().state,
            RecordedState::Committed
        );
        // A leg that cannot be read while the other shows its confirm: not PROCESSING,
        // which could go back on a SUCCEEDED.
        fake.script(Leg::BalanceStore, |s| s.reads_fail = true);
        let unreadable = try_get_by_id(&gateway, &id).await.unwrap_err();
        assert_eq!(unreadable.code(), tonic::Code::Unavailable);
        assert!(
            unreadable.message().contains("retry shortly"),
            "{}",
            unreadable.message()
        );
        fake.script(Leg::BalanceStore, |s| s.reads_fail = false);

        // The recovery half picks it up from the record alone.
        let driven = recovery(&store, &fake)
            .resume(record, None, recovery_deadlines())
            .await;
        assert_eq!(driven.record.state, RecordedState::Succeeded);
        let now = gateway
            .client
            .get_transfer_as(
                "alice",
                GetTransferRequest {
                    lookup: Some(get_transfer_request::Lookup::TransferId(id.clone())),
                },
            )
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(status_of(&now), TransferStatus::Succeeded);
        for leg in Leg::BOTH {
            assert_eq!(fake.reservation(leg, &id), ReservationView::Confirmed);
        }
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_replay_returns_the_same_transfer_without_moving_money_again() {
    for test_db in testkit::db::all("replay").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        let first = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        let again = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(status_of(&again), TransferStatus::Succeeded);
        assert_eq!(fake.count_op(Op::Reserve), 2, "one reserve per leg, ever");
        assert_eq!(fake.count_op(Op::Confirm), 2);
        assert_eq!(store.recent(10).await.unwrap().len(), 1);

        // Same key, different request: refused, nothing called.
        let reused = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 999))
            .await
            .unwrap_err();
        assert_eq!(reused.code(), tonic::Code::AlreadyExists);
        assert!(
            reused
                .message()
                .contains("idempotency key \"k1\" was already used for a different request"),
            "{}",
            reused.message()
        );
        assert_eq!(fake.count_op(Op::Reserve), 2);
        gateway.stop().await;
    }
}

#[tokio::test]
async fn concurrent_duplicates_resolve_to_one_transfer() {
    for test_db in testkit::db::all("duplicates").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        // Slow enough that the duplicates arrive while the original is reserving.
        fake.script(Leg::External, |s| {
            s.reserve_delay = Duration::from_millis(50)
        });
        let gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        let mut calls = Vec::new();
        for _ in 0..8 {
            let mut client = gateway.client.clone();
            calls.push(tokio::spawn(async move {
                client
                    .approve_transfer(approve_request("alice", "dup", 250))
                    .await
                    .unwrap()
                    .into_inner()
                    .transfer
                    .unwrap()
            }));
        }
        let mut ids = std::collections::HashSet::new();
        let mut succeeded = 0;
        for call in calls {
            let transfer = call.await.unwrap();
            ids.insert(transfer.transfer_id.clone());
            match status_of(&transfer) {
                TransferStatus::Succeeded => succeeded += 1,
                // A duplicate whose own budget ran out first answers what it found.
                TransferStatus::Processing => {}
                other => panic!("unexpected status {other:?}"),
            }
        }
        assert_eq!(ids.len(), 1, "{:?}: one transfer", test_db.backend);
        assert!(succeeded >= 1);
        assert_eq!(fake.count_op(Op::Reserve), 2, "one reserve per leg");
        assert_eq!(store.recent(10).await.unwrap().len(), 1);
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_replay_takes_over_a_stale_undecided_transfer_and_aborts_it() {
    for test_db in testkit::db::all("takeover").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let mut gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
        // An intent whose gateway died long ago (past any budget), before deciding.
        let mut orphan = intent("alice", "k1", 250, now_ms() - 60_000);
        orphan.fingerprint = fingerprint_of(approve_request("alice", "k1", 250));
        store.insert_intent(&orphan).await.unwrap();

        let transfer = gateway
            .client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(transfer.transfer_id, orphan.transfer_id);
        assert_eq!(status_of(&transfer), TransferStatus::Failed);
        assert!(
            transfer
                .failure_reason
                .contains("aborted by a retry of the request"),
            "{}",
            transfer.failure_reason
        );
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Reserve, &orphan.transfer_id), 0);
            assert_eq!(fake.count(leg, Op::Cancel, &orphan.transfer_id), 1);
            assert_eq!(
                fake.reservation(leg, &orphan.transfer_id),
                ReservationView::Cancelled
            );
        }
        assert_eq!(
            store.get(&orphan.transfer_id).await.unwrap().unwrap().state,
            RecordedState::Failed
        );
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_replay_of_a_live_undecided_transfer_polls_and_answers_processing() {
    let test_db = testkit::db::sqlite("pollreplay");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    // A second of budget: the replay polls the store until its budget is spent, and on a
    // loaded machine 200 ms of SQLite polls can miss (the answer, not the timing, is the
    // point here; `make bench` measures latency).
    let mut settings = Settings::default();
    settings.common.budget.total_ms = 1_000;
    settings.common.budget.after_reserve_ms = 300;
    let mut gateway = spawn_gateway(settings, store.clone(), fake.clone()).await;
    // Its own request is (as far as anyone can tell) still deciding.
    let mut live = intent("alice", "k1", 250, now_ms() + 60_000);
    live.fingerprint = fingerprint_of(approve_request("alice", "k1", 250));
    store.insert_intent(&live).await.unwrap();
    let transfer = gateway
        .client
        .approve_transfer(approve_request("alice", "k1", 250))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(transfer.transfer_id, live.transfer_id);
    assert_eq!(status_of(&transfer), TransferStatus::Processing);
    assert!(
        fake.calls().is_empty(),
        "a replay never calls the participants itself"
    );
    assert_eq!(
        store.get(&live.transfer_id).await.unwrap().unwrap().state,
        RecordedState::Started
    );
    gateway.stop().await;
}

#[tokio::test]
async fn invalid_requests_are_refused_with_nothing_written() {
    let test_db = testkit::db::sqlite("invalid");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let mut gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;
    let mut bad = approve_request("alice", "k1", 0);
    let err = gateway
        .client
        .approve_transfer(bad.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("amount.minor_units"),
        "{}",
        err.message()
    );
    // alice's token, so that only the body is wrong.
    bad = approve_request("", "k1", 10);
    let err = gateway
        .client
        .approve_transfer_as("alice", bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("user_id"), "{}", err.message());
    let max = Settings::default().amount_minor_max;
    let err = gateway
        .client
        .approve_transfer(approve_request("alice", "k1", max + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with(&format!(
            "amount.minor_units: amount must be at most {max} minor units"
        )),
        "{}",
        err.message()
    );
    let mut not_iso = approve_request("alice", "k1", 10);
    not_iso.amount.as_mut().unwrap().currency = "ABC".into();
    let err = gateway.client.approve_transfer(not_iso).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("amount.currency"),
        "{}",
        err.message()
    );
    assert!(store.recent(10).await.unwrap().is_empty());
    assert!(fake.calls().is_empty());

    let err = gateway
        .client
        .get_transfer_as("alice", GetTransferRequest { lookup: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = gateway
        .client
        .get_transfer_as(
            "alice",
            GetTransferRequest {
                lookup: Some(get_transfer_request::Lookup::TransferId("nope".into())),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    gateway.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_answers_unavailable() {
    let test_db = testkit::db::sqlite("storedown");
    // At the intent: nothing happened.
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let mut gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;
    store.db().pool.close().await;
    let err = gateway
        .client
        .approve_transfer(approve_request("alice", "k1", 250))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // The database's own words stay in the log.
    assert_eq!(
        err.message(),
        "the transfer store is unavailable; retry with the same idempotency key"
    );
    assert!(fake.calls().is_empty());
    let err = gateway
        .client
        .get_transfer_as(
            "alice",
            GetTransferRequest {
                lookup: Some(get_transfer_request::Lookup::TransferId("t-1".into())),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(
        err.message(),
        "the transfer store is unavailable; retry later"
    );
    gateway.stop().await;

    // At the decision: the transfer stays undecided and nothing is settled.
    let store = open_store(&test_db).await;
    let observer = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    fake.script(Leg::External, |s| {
        s.reserve_delay = Duration::from_millis(300)
    });
    let gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
    let mut client = gateway.client.clone();
    let call = tokio::spawn(async move {
        client
            .approve_transfer(approve_request("alice", "k2", 250))
            .await
    });
    let give_up = tokio::time::Instant::now() + PATIENCE;
    let record = loop {
        if let Some(record) = observer.find_by_key("alice", "k2").await.unwrap() {
            break record;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the intent was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    store.db().pool.close().await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    assert_eq!(
        err.message(),
        "the transfer store is unavailable; retry with the same idempotency key"
    );
    let after = observer.get(&record.transfer_id).await.unwrap().unwrap();
    assert_eq!(after.state, RecordedState::Started);
    assert_eq!(fake.count_op(Op::Confirm) + fake.count_op(Op::Cancel), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_refused() {
    let test_db = testkit::db::sqlite("inflight");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    fake.script(Leg::External, |s| {
        s.reserve_delay = Duration::from_millis(500)
    });
    let mut settings = roomy_settings();
    settings.in_flight_max = 1;
    let mut gateway = spawn_gateway(settings, store.clone(), fake.clone()).await;
    let mut client = gateway.client.clone();
    let first = tokio::spawn(async move {
        client
            .approve_transfer(approve_request("alice", "k1", 250))
            .await
    });
    while fake.count_op(Op::Reserve) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let err = gateway
        .client
        .approve_transfer(approve_request("bob", "k1", 250))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let first = first.await.unwrap().unwrap().into_inner().transfer.unwrap();
    assert_eq!(status_of(&first), TransferStatus::Succeeded);
    // The permit is back.
    gateway
        .client
        .approve_transfer(approve_request("bob", "k1", 250))
        .await
        .unwrap();
    gateway.stop().await;
}

/// A store that hangs (here: another process holds SQLite's write lock, so every write
/// would wait out the 5 s busy timeout) still gets the client an answer inside its
/// budget: UNAVAILABLE, with no participant called.
#[tokio::test]
async fn a_hanging_store_answers_unavailable_within_the_budget() {
    use sqlx::{Connection, Executor};

    let test_db = testkit::db::sqlite("storehang");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let mut gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;

    let mut blocker = sqlx::AnyConnection::connect(&test_db.url).await.unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();

    let started = std::time::Instant::now();
    let err = gateway
        .client
        .approve_transfer(approve_request("alice", "k1", 250))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    // Only an unbounded store call waits anywhere near the 5 s busy timeout.
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    assert!(fake.calls().is_empty());

    blocker.execute("ROLLBACK").await.unwrap();
    gateway.stop().await;
}

/// Sends raw bytes as the request body and reads the reply's bytes: what a client that
/// does not speak our protobuf sends.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// A body that is not the method's protobuf message is the client's mistake:
/// INVALID_ARGUMENT with one stable message (not prost's INTERNAL "failed to decode
/// Protobuf message"), and nothing is recorded or called.
#[tokio::test]
async fn an_undecodable_body_is_invalid_argument() {
    use tonic::codegen::http::uri::PathAndQuery;

    let test_db = testkit::db::sqlite("undecodable");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let gateway = spawn_gateway(Settings::default(), store.clone(), fake.clone()).await;
    // Over TLS, as a mobile app connects; the body fails before any token is looked at.
    let channel = gateway.pki.channel(gateway.addr, None).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    let bodies: [(&str, Vec<u8>); 3] = [
        (
            "not protobuf at all (a varint that never ends)",
            vec![0xff; 16],
        ),
        (
            "field 1 (a string) that is not UTF-8",
            vec![0x0a, 0x02, 0xc3, 0x28],
        ),
        ("a length past the end of the body", vec![0x0a, 0x7f, 0x61]),
    ];
    for method in ["ApproveTransfer", "GetTransfer"] {
        let path = format!("/banktransfer.gateway.v1.TransferService/{method}");
        for (what, body) in &bodies {
            grpc.ready().await.unwrap();
            let err = grpc
                .unary(
                    tonic::Request::new(body.clone()),
                    PathAndQuery::try_from(path.as_str()).unwrap(),
                    RawCodec,
                )
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                tonic::Code::InvalidArgument,
                "{method}, {what}: {err:?}"
            );
            assert_eq!(err.message(), banktransfer_api::codec::UNDECODABLE_MSG);
        }
    }
    assert!(store.recent(10).await.unwrap().is_empty());
    assert!(fake.calls().is_empty());
    gateway.stop().await;
}
