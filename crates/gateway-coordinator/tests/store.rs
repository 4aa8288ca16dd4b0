//! The transfer log on every back end: idempotent intents, the decision compare-and-set
//! under a real race, guarded outcomes, exclusive leases and the due-listing.

mod common;

use banktransfer_protocol::transfer::{Decision, RecordedState};
use common::{intent, open_store};
use coordinator::store::{Backlog, Intent, StoreError, TransferStore};

const T0: u64 = 1_700_000_000_000;

#[tokio::test]
async fn intent_insert_is_idempotent_and_keeps_the_first_fingerprint() {
    for test_db in testkit::db::all("intent").await {
        let store = open_store(&test_db).await;
        let first = intent("alice", "k1", 100, T0);
        let Intent::Created(created) = store.insert_intent(&first).await.unwrap() else {
            panic!("{:?}: the first intent must be created", test_db.backend);
        };
        assert_eq!(created.transfer_id, first.transfer_id);
        assert_eq!(created.state, RecordedState::Started);
        assert_eq!(created.attempts, 0);
        assert_eq!((created.created_at_ms, created.updated_at_ms), (T0, T0));

        // Same key, same request, new transfer id: the first transfer answers.
        let replay = intent("alice", "k1", 100, T0 + 5);
        let Intent::Existing(existing) = store.insert_intent(&replay).await.unwrap() else {
            panic!("a replay must find the existing transfer");
        };
        assert_eq!(existing, created);

        // Same key, different request: found, and its fingerprint tells them apart.
        let different = intent("alice", "k1", 999, T0 + 6);
        let Intent::Existing(existing) = store.insert_intent(&different).await.unwrap() else {
            panic!("a reused key must find the existing transfer");
        };
        assert_eq!(existing.transfer_id, first.transfer_id);
        assert_ne!(existing.fingerprint, different.fingerprint);
        assert!(store.get(&different.transfer_id).await.unwrap().is_none());

        // Keys are per user.
        let bob = intent("bob", "k1", 100, T0);
        assert!(matches!(
            store.insert_intent(&bob).await.unwrap(),
            Intent::Created(_)
        ));
        assert_eq!(
            store
                .find_by_key("alice", "k1")
                .await
                .unwrap()
                .unwrap()
                .transfer_id,
            first.transfer_id
        );
        assert!(store.find_by_key("carol", "k1").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn concurrent_intents_under_one_key_resolve_to_one_transfer() {
    for test_db in testkit::db::all("intentrace").await {
        let stores = [open_store(&test_db).await, open_store(&test_db).await];
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                store
                    .insert_intent(&intent("alice", "same", 100, T0))
                    .await
                    .unwrap()
            }));
        }
        let mut created = 0;
        let mut ids = std::collections::HashSet::new();
        for task in tasks {
            match task.await.unwrap() {
                Intent::Created(r) => {
                    created += 1;
                    ids.insert(r.transfer_id);
                }
                Intent::Existing(r) => {
                    ids.insert(r.transfer_id);
                }
            }
        }
        assert_eq!(created, 1, "{:?}", test_db.backend);
        assert_eq!(ids.len(), 1, "{:?}", test_db.backend);
    }
}

#[tokio::test]
async fn racing_deciders_agree_on_the_one_decision_recorded() {
    for test_db in testkit::db::all("decisionrace").await {
        // Two pools: on SQLite, two processes' worth of connections.
        let gateway = open_store(&test_db).await;
        let reconciler = open_store(&test_db).await;
        let mut winners = [0, 0];
        for i in 0..10 {
            let new = intent("alice", &format!("race-{i}"), 100, T0);
            gateway.insert_intent(&new).await.unwrap();
            let id = new.transfer_id.clone();
            let (commit, abort) = tokio::join!(
                gateway.record_decision(&id, Decision::Commit, None, T0 + 10),
                reconciler.record_decision(&id, Decision::Abort, Some("stale"), T0 + 11),
            );
            let (commit, abort) = (commit.unwrap(), abort.unwrap());
            assert_eq!(
                commit, abort,
                "{:?}: both must read the same record",
                test_db.backend
            );
            match commit.state {
                RecordedState::Committed => {
                    winners[0] += 1;
                    assert_eq!(commit.failure_reason, None);
                    assert_eq!(commit.decided_at_ms, Some(T0 + 10));
                }
                RecordedState::Aborted => {
                    winners[1] += 1;
                    assert_eq!(commit.failure_reason.as_deref(), Some("stale"));
                    assert_eq!(commit.decided_at_ms, Some(T0 + 11));
                }
                other => panic!("undecided after two decisions: {other:?}"),
            }
            assert_eq!(commit.updated_at_ms, commit.decided_at_ms.unwrap());
            // A late decider changes nothing.
            let late = gateway
                .record_decision(&id, Decision::Abort, Some("late"), T0 + 99)
                .await
                .unwrap();
            assert_eq!(late, commit);
        }
        assert_eq!(winners[0] + winners[1], 10);
    }
}

#[tokio::test]
async fn outcomes_are_guarded_by_the_decision() {
    for test_db in testkit::db::all("outcome").await {
        let store = open_store(&test_db).await;
        let new = intent("alice", "k", 100, T0);
        store.insert_intent(&new).await.unwrap();
        let id = &new.transfer_id;

        // No outcome before a decision.
        let err = store
            .record_outcome(id, RecordedState::Succeeded, T0 + 1)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Started
        );

        store
            .record_decision(id, Decision::Commit, None, T0 + 2)
            .await
            .unwrap();
        // A committed transfer cannot fail.
        assert!(
            store
                .record_outcome(id, RecordedState::Failed, T0 + 3)
                .await
                .is_err()
        );
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            RecordedState::Committed
        );

        let done = store
            .record_outcome(id, RecordedState::Succeeded, T0 + 4)
            .await
            .unwrap();
        assert_eq!(done.state, RecordedState::Succeeded);
        assert_eq!(done.updated_at_ms, T0 + 4);
        // Recording it again is harmless and changes nothing.
        let again = store
            .record_outcome(id, RecordedState::Succeeded, T0 + 5)
            .await
            .unwrap();
        assert_eq!(again, done);
        assert!(store.get("no-such-transfer").await.unwrap().is_none());
        assert!(
            store
                .record_decision("no-such-transfer", Decision::Abort, Some("x"), T0)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn a_lease_is_held_by_one_replica_until_it_expires_or_is_released() {
    for test_db in testkit::db::all("lease").await {
        let a = open_store(&test_db).await;
        let b = open_store(&test_db).await;
        let new = intent("alice", "k", 100, T0);
        a.insert_intent(&new).await.unwrap();
        let id = new.transfer_id.clone();

        let now = T0 + 1_000;
        let (got_a, got_b) = tokio::join!(
            a.claim(&id, "replica-a", now, now + 10_000),
            b.claim(&id, "replica-b", now, now + 10_000),
        );
        let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
        assert!(
            got_a ^ got_b,
            "{:?}: exactly one claim must win",
            test_db.backend
        );
        let (owner, other, other_store) = if got_a {
            ("replica-a", "replica-b", &b)
        } else {
            ("replica-b", "replica-a", &a)
        };
        let leased = a.get(&id).await.unwrap().unwrap();
        assert_eq!(leased.lease_owner.as_deref(), Some(owner));
        assert_eq!(leased.lease_until_ms, Some(now + 10_000));
        // Leased transfers are not listed as due.
        assert!(a.list_due(now + 1, 10).await.unwrap().is_empty());

        // Only the owner can release; a live lease cannot be taken.
        other_store.release(&id, other).await.unwrap();
        assert!(
            !other_store
                .claim(&id, other, now + 5, now + 20_000)
                .await
                .unwrap()
        );
        // An expired lease (a dead replica) can.
        assert!(
            other_store
                .claim(&id, other, now + 10_001, now + 20_000)
                .await
                .unwrap()
        );

        // Rescheduling counts the attempt, moves the due time and releases.
        other_store
            .reschedule(&id, other, now + 50_000, true)
            .await
            .unwrap();
        let after = a.get(&id).await.unwrap().unwrap();
        assert_eq!(after.attempts, 1);
        assert_eq!(after.next_attempt_at_ms, now + 50_000);
        assert_eq!((after.lease_owner, after.lease_until_ms), (None, None));
        // Not due yet: no claim.
        assert!(
            !a.claim(&id, owner, now + 49_999, now + 60_000)
                .await
                .unwrap()
        );
        // Rescheduling without counting, and release_all.
        assert!(
            a.claim(&id, owner, now + 50_000, now + 60_000)
                .await
                .unwrap()
        );
        a.reschedule(&id, owner, now + 50_000, false).await.unwrap();
        assert_eq!(a.get(&id).await.unwrap().unwrap().attempts, 1);
        assert!(
            a.claim(&id, owner, now + 50_000, now + 60_000)
                .await
                .unwrap()
        );
        assert_eq!(a.release_all(owner).await.unwrap(), 1);
        assert_eq!(a.get(&id).await.unwrap().unwrap().lease_owner, None);
    }
}

#[tokio::test]
async fn due_listing_honours_next_attempt_and_skips_finished_transfers() {
    for test_db in testkit::db::all("due").await {
        let store = open_store(&test_db).await;
        let mut later = intent("alice", "later", 100, T0);
        later.next_attempt_at_ms = T0 + 5_000;
        let mut soon = intent("alice", "soon", 100, T0);
        soon.next_attempt_at_ms = T0 + 2_000;
        let mut first = intent("alice", "first", 100, T0);
        first.next_attempt_at_ms = T0 + 1_000;
        let done = intent("alice", "done", 100, T0);
        for new in [&later, &soon, &first, &done] {
            store.insert_intent(new).await.unwrap();
        }
        store
            .record_decision(&done.transfer_id, Decision::Abort, Some("x"), T0)
            .await
            .unwrap();
        store
            .record_outcome(&done.transfer_id, RecordedState::Failed, T0)
            .await
            .unwrap();

        let ids = |records: Vec<coordinator::store::TransferRecord>| {
            records
                .into_iter()
                .map(|r| r.transfer_id)
                .collect::<Vec<_>>()
        };
        assert!(store.list_due(T0 + 999, 10).await.unwrap().is_empty());
        assert_eq!(
            ids(store.list_due(T0 + 2_000, 10).await.unwrap()),
            vec![first.transfer_id.clone(), soon.transfer_id.clone()]
        );
        assert_eq!(
            ids(store.list_due(T0 + 9_000, 2).await.unwrap()),
            vec![first.transfer_id.clone(), soon.transfer_id.clone()],
            "the batch is bounded"
        );
        assert_eq!(store.list_due(T0 + 9_000, 10).await.unwrap().len(), 3);
        // A finished transfer is never claimed either.
        assert!(
            !store
                .claim(&done.transfer_id, "r", T0 + 9_000, T0 + 19_000)
                .await
                .unwrap()
        );

        assert_eq!(store.recent(10).await.unwrap().len(), 4);
        assert_eq!(store.recent(1).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_backlog_counts_unfinished_transfers_by_state_and_finds_the_oldest() {
    for test_db in testkit::db::all("backlog").await {
        let store = open_store(&test_db).await;
        assert_eq!(store.backlog().await.unwrap(), Backlog::default());
        let done = intent("alice", "done", 100, T0);
        let committed = intent("alice", "committed", 100, T0 + 10);
        let aborted = intent("alice", "aborted", 100, T0 + 20);
        let started = intent("alice", "started", 100, T0 + 30);
        for new in [&done, &committed, &aborted, &started] {
            store.insert_intent(new).await.unwrap();
        }
        for (new, decision) in [
            (&done, Decision::Commit),
            (&committed, Decision::Commit),
            (&aborted, Decision::Abort),
        ] {
            store
                .record_decision(&new.transfer_id, decision, None, T0 + 40)
                .await
                .unwrap();
        }
        store
            .record_outcome(&done.transfer_id, RecordedState::Succeeded, T0 + 50)
            .await
            .unwrap();
        assert_eq!(
            store.backlog().await.unwrap(),
            Backlog {
                started: 1,
                committed: 1,
                aborted: 1,
                // The finished transfer, older, is not part of it.
                oldest_created_at_ms: Some(T0 + 10),
            },
            "{:?}",
            test_db.backend
        );
    }
}
