//! Recovery on every back end: what the reconciler does with each kind of unfinished
//! transfer, its backoff, its leases, and its races with the gateway and with other
//! replicas.

mod common;

use std::sync::Arc;
use std::time::Duration;

use banktransfer_protocol::transfer::{Decision, Leg, RecordedState};
use common::{intent, now_ms, open_store, options, reconciler};
use coordinator::driver::{Deadlines, Driver};
use coordinator::participants::ReservationView;
use coordinator::pause::PausePoints;
use coordinator::store::{Intent, TransferStore};
use reconciler::pass::PassReport;
use service_kit::clock::ManualClock;
use testkit::participants::{FakeParticipants, Op};

#[tokio::test]
async fn a_stale_undecided_transfer_is_aborted_and_both_legs_cancelled() {
    for test_db in testkit::db::all("staleabort").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let orphan = intent("alice", "k1", t0);
        store.insert_intent(&orphan).await.unwrap();
        let id = orphan.transfer_id.as_str();
        // A held reserve its gateway never got to decide on.
        fake.set_reservation(Leg::External, id, ReservationView::Held);

        let clock = ManualClock::new(t0 + 5_000);
        let report = reconciler(&store, &fake, &clock, options("r1"))
            .run_pass()
            .await
            .unwrap();
        assert_eq!(
            report,
            PassReport {
                examined: 1,
                aborted: 1,
                failed: 1,
                ..PassReport::default()
            },
            "{:?}",
            test_db.backend
        );
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.state, RecordedState::Failed);
        assert_eq!(
            record.failure_reason.as_deref(),
            Some("not decided within 2000 ms: aborted by the reconciler")
        );
        assert_eq!((record.lease_owner, record.lease_until_ms), (None, None));
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Cancel, id), 1);
            assert_eq!(fake.count(leg, Op::Reserve, id), 0);
            assert_eq!(fake.count(leg, Op::Confirm, id), 0);
            assert_eq!(fake.reservation(leg, id), ReservationView::Cancelled);
        }
        // Finished: a later pass has nothing to do.
        clock.advance_ms(60_000);
        let again = reconciler(&store, &fake, &clock, options("r1"))
            .run_pass()
            .await
            .unwrap();
        assert_eq!(again, PassReport::default());
    }
}

#[tokio::test]
async fn a_young_undecided_transfer_is_left_to_its_request() {
    for test_db in testkit::db::all("young").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let live = intent("alice", "k1", t0);
        store.insert_intent(&live).await.unwrap();
        // Due (its request's budget is over) but not yet stale.
        let clock = ManualClock::new(t0 + 500);
        let report = reconciler(&store, &fake, &clock, options("r1"))
            .run_pass()
            .await
            .unwrap();
        assert_eq!(report.examined, 1);
        assert_eq!(report.aborted + report.retrying + report.failed, 0);
        assert!(fake.calls().is_empty());
        let record = store.get(&live.transfer_id).await.unwrap().unwrap();
        assert_eq!(record.state, RecordedState::Started);
        assert_eq!(record.attempts, 0, "waiting is not a failed attempt");
        assert_eq!(record.next_attempt_at_ms, t0 + 2_000);
        assert_eq!(record.lease_owner, None);
    }
}

#[tokio::test]
async fn a_commit_left_by_a_crashed_gateway_is_confirmed() {
    for test_db in testkit::db::all("crashcommit").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let new = intent("alice", "k1", t0);
        store.insert_intent(&new).await.unwrap();
        let id = new.transfer_id.as_str();
        for leg in Leg::BOTH {
            fake.set_reservation(leg, id, ReservationView::Held);
        }
        // The gateway died right after recording the commit.
        store
            .record_decision(id, Decision::Commit, None, t0 + 50)
            .await
            .unwrap();

        let clock = ManualClock::new(t0 + 1_000);
        let report = reconciler(&store, &fake, &clock, options("r1"))
            .run_pass()
            .await
            .unwrap();
        assert_eq!(report.succeeded, 1, "{:?}", test_db.backend);
        assert_eq!(report.aborted, 0);
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Succeeded
        );
        for leg in Leg::BOTH {
            assert_eq!(fake.reservation(leg, id), ReservationView::Confirmed);
            assert_eq!(fake.count(leg, Op::Cancel, id), 0);
        }
    }
}

#[tokio::test]
async fn an_unanswering_participant_is_retried_with_backoff_until_it_answers() {
    for test_db in testkit::db::all("backoff").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        fake.script(Leg::BalanceStore, |s| s.settle_fails = true);
        let t0 = now_ms();
        let new = intent("alice", "k1", t0);
        store.insert_intent(&new).await.unwrap();
        let id = new.transfer_id.as_str();
        for leg in Leg::BOTH {
            fake.set_reservation(leg, id, ReservationView::Held);
        }
        store
            .record_decision(id, Decision::Commit, None, t0)
            .await
            .unwrap();

        let clock = ManualClock::new(t0 + 1_000);
        let mut opts = options("r1");
        opts.attempts_alert = 1;
        let reconciler = reconciler(&store, &fake, &clock, opts);
        let report = reconciler.run_pass().await.unwrap();
        assert_eq!(report.retrying, 1, "{:?}", test_db.backend);
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.state, RecordedState::Committed);
        assert_eq!(record.attempts, 1);
        // First retry: 100..=200 ms later (half fixed, half jitter).
        let wait_ms = record.next_attempt_at_ms - (t0 + 1_000);
        assert!((100..=200).contains(&wait_ms), "{wait_ms}");
        assert_eq!(record.lease_owner, None);

        // Not due again yet.
        assert_eq!(reconciler.run_pass().await.unwrap(), PassReport::default());

        // Due: fails again (past attempts_alert), and backs off further.
        clock.advance_ms(wait_ms);
        assert_eq!(reconciler.run_pass().await.unwrap().retrying, 1);
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.attempts, 2);
        let second_wait_ms = record.next_attempt_at_ms - clock_now(&clock);
        assert!((200..=400).contains(&second_wait_ms), "{second_wait_ms}");

        // The participant recovers: the next due pass finishes it.
        fake.script(Leg::BalanceStore, |s| s.settle_fails = false);
        clock.advance_ms(second_wait_ms);
        assert_eq!(reconciler.run_pass().await.unwrap().succeeded, 1);
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Succeeded
        );
        // Confirms are idempotent: the external leg was confirmed on every attempt.
        assert_eq!(fake.count(Leg::External, Op::Confirm, id), 3);
        assert_eq!(
            fake.reservation(Leg::External, id),
            ReservationView::Confirmed
        );
    }
}

fn clock_now(clock: &ManualClock) -> u64 {
    service_kit::clock::Clock::now_ms(clock)
}

#[tokio::test]
async fn a_dead_replicas_lease_expires_and_another_replica_finishes_the_transfer() {
    for test_db in testkit::db::all("deadlease").await {
        let store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let new = intent("alice", "k1", t0);
        store.insert_intent(&new).await.unwrap();
        let id = new.transfer_id.as_str();
        // A replica claimed it at t0 + 3000 and died.
        assert!(
            store
                .claim(id, "dead", t0 + 3_000, t0 + 13_000)
                .await
                .unwrap()
        );

        let clock = ManualClock::new(t0 + 5_000);
        let survivor = reconciler(&store, &fake, &clock, options("alive"));
        assert_eq!(survivor.run_pass().await.unwrap(), PassReport::default());
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Started
        );

        clock.advance_ms(8_001);
        let report = survivor.run_pass().await.unwrap();
        assert_eq!(
            (report.aborted, report.failed),
            (1, 1),
            "{:?}",
            test_db.backend
        );
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Failed
        );
    }
}

#[tokio::test]
async fn two_replicas_on_one_database_process_each_transfer_once() {
    for test_db in testkit::db::all("replicas").await {
        let store_a = open_store(&test_db).await;
        let store_b = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let mut ids = Vec::new();
        for i in 0..20 {
            let new = intent("alice", &format!("k{i}"), t0);
            store_a.insert_intent(&new).await.unwrap();
            ids.push(new.transfer_id);
        }
        let clock = ManualClock::new(t0 + 5_000);
        let a = reconciler(&store_a, &fake, &clock, options("replica-a"));
        let b = reconciler(&store_b, &fake, &clock, options("replica-b"));
        let (ra, rb) = tokio::join!(a.run_pass(), b.run_pass());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            ra.examined + rb.examined,
            20,
            "{:?}: {ra:?} {rb:?}",
            test_db.backend
        );
        assert_eq!(ra.aborted + rb.aborted, 20);
        for id in &ids {
            for leg in Leg::BOTH {
                assert_eq!(fake.count(leg, Op::Cancel, id), 1, "{id} {leg:?}");
            }
            assert_eq!(
                store_a.get(id).await.unwrap().unwrap().state,
                RecordedState::Failed
            );
        }
    }
}

#[tokio::test]
async fn a_reconciler_abort_wins_over_a_late_gateway_and_the_gateway_follows_it() {
    for test_db in testkit::db::all("abortfirst").await {
        let gateway_store = open_store(&test_db).await;
        let reconciler_store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        // The gateway is stuck reserving on the external leg.
        fake.close_reserve_gate(Leg::External);
        let t0 = now_ms();
        let new = intent("alice", "k1", t0 - 5_000);
        let Intent::Created(record) = gateway_store.insert_intent(&new).await.unwrap() else {
            panic!("fresh intent");
        };
        let id = record.transfer_id.clone();
        let driver = Driver::new(
            gateway_store.clone(),
            fake.clone(),
            Arc::new(service_kit::clock::SystemClock),
            PausePoints::off(),
        );
        let gateway = tokio::spawn(async move {
            driver
                .begin(
                    record,
                    Deadlines {
                        reserve_deadline_ms: t0 + 10_000,
                        settle_deadline_ms: t0 + 10_000,
                    },
                )
                .await
        });
        assert!(
            fake.wait_for_call(Leg::External, Op::Reserve, &id, Duration::from_secs(5))
                .await
        );
        let clock = ManualClock::new(t0);
        let report = reconciler(&reconciler_store, &fake, &clock, options("r1"))
            .run_pass()
            .await
            .unwrap();
        assert_eq!(report.aborted, 1, "{:?}", test_db.backend);

        // The held-up reserve lands after the cancel: the tombstone refuses it.
        fake.open_reserve_gate(Leg::External);
        let driven = gateway.await.unwrap();
        assert!(
            matches!(
                driven.record.state,
                RecordedState::Aborted | RecordedState::Failed
            ),
            "the gateway follows the recorded abort: {:?}",
            driven.record.state
        );
        assert_eq!(
            driven.record.failure_reason.as_deref(),
            Some("not decided within 2000 ms: aborted by the reconciler")
        );
        for leg in Leg::BOTH {
            assert_eq!(fake.count(leg, Op::Confirm, &id), 0);
            assert_ne!(fake.reservation(leg, &id), ReservationView::Held, "{leg:?}");
            assert_ne!(
                fake.reservation(leg, &id),
                ReservationView::Confirmed,
                "{leg:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_racing_gateway_and_reconciler_always_agree() {
    for test_db in testkit::db::all("race").await {
        let gateway_store = open_store(&test_db).await;
        let reconciler_store = open_store(&test_db).await;
        let fake = Arc::new(FakeParticipants::new());
        let t0 = now_ms();
        let clock = ManualClock::new(t0);
        let reconciler = reconciler(&reconciler_store, &fake, &clock, options("r1"));
        let driver = Driver::new(
            gateway_store.clone(),
            fake.clone(),
            Arc::new(service_kit::clock::SystemClock),
            PausePoints::off(),
        );
        for i in 0..10 {
            // Stale from the reconciler's view, still being driven by its gateway.
            let new = intent("alice", &format!("k{i}"), t0 - 5_000);
            let Intent::Created(record) = gateway_store.insert_intent(&new).await.unwrap() else {
                panic!("fresh intent");
            };
            let id = record.transfer_id.clone();
            let deadlines = Deadlines {
                reserve_deadline_ms: now_ms() + 5_000,
                settle_deadline_ms: now_ms() + 5_000,
            };
            let (driven, report) =
                tokio::join!(driver.begin(record, deadlines), reconciler.run_pass());
            report.unwrap();
            let stored = gateway_store.get(&id).await.unwrap().unwrap();
            let committed =
                |s: RecordedState| matches!(s, RecordedState::Committed | RecordedState::Succeeded);
            assert_eq!(
                committed(driven.record.state),
                committed(stored.state),
                "{:?}: gateway saw {:?}, the log holds {:?}",
                test_db.backend,
                driven.record.state,
                stored.state
            );
            let confirms: usize = Leg::BOTH
                .iter()
                .map(|l| fake.count(*l, Op::Confirm, &id))
                .sum();
            let cancels: usize = Leg::BOTH
                .iter()
                .map(|l| fake.count(*l, Op::Cancel, &id))
                .sum();
            if committed(stored.state) {
                assert_eq!(cancels, 0, "a committed transfer is never cancelled");
            } else {
                assert_eq!(confirms, 0, "an aborted transfer is never confirmed");
            }
            // Whatever the outcome, the legs agree with each other.
            assert_eq!(
                fake.reservation(Leg::External, &id) == ReservationView::Confirmed,
                fake.reservation(Leg::BalanceStore, &id) == ReservationView::Confirmed,
            );
        }
    }
}
