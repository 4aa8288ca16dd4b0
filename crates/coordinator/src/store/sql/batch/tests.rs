//! The batched log writes against the reference: the same writes, one after another in
//! transactions of their own (`run_alone`) on one database, and in batches
//! (`write_many`) on another, must give the same answers and leave the same rows. Few
//! keys and transfers, so batches hold taken keys, repeated transfers, decisions that
//! lose their compare-and-set and outcomes recorded twice.

use std::collections::HashMap;

use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Decision, RecordedState};
use service_kit::db::{self, Db, PoolSettings};
use service_kit::group_commit::Job;

use testkit::rng::SimRng;

use super::*;
use crate::store::{MIGRATIONS, NewTransfer};

/// Writes that each succeed alone: intents with fresh transfer ids (their keys often
/// taken), decisions on recorded transfers (often decided already), and outcomes that
/// match the recorded decision (often recorded already).
fn writes(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = SimRng::new(seed);
    let mut states: Vec<(String, RecordedState)> = Vec::new();
    let mut keys: HashMap<(String, String), usize> = HashMap::new();
    let mut now_ms = 1_000;
    let mut ops = Vec::with_capacity(count);
    while ops.len() < count {
        now_ms += rng.below(3);
        let choice = rng.below(10);
        if states.is_empty() || choice < 4 {
            let user_id = format!("user-{}", rng.below(3));
            let idempotency_key = format!("key-{}", rng.below(12));
            let transfer_id = format!("t{}", ops.len());
            let new = NewTransfer {
                transfer_id: transfer_id.clone(),
                user_id: user_id.clone(),
                idempotency_key: idempotency_key.clone(),
                fingerprint: format!("fp-{idempotency_key}"),
                external_account_id: format!("ext-{user_id}"),
                internal_account_id: format!("int-{user_id}"),
                amount: Money::positive(1 + rng.below(500) as i64, "USD").unwrap(),
                created_at_ms: now_ms,
                next_attempt_at_ms: now_ms + 200,
                trace_context: (rng.below(2) == 0).then(|| format!("00-{seed:032x}-01")),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) =
                keys.entry((user_id, idempotency_key))
            {
                slot.insert(states.len());
                states.push((transfer_id, RecordedState::Started));
            }
            ops.push(Op::Intent(new));
            continue;
        }
        let index = rng.below(states.len() as u64) as usize;
        let (transfer_id, state) = states[index].clone();
        if choice < 7 || state == RecordedState::Started {
            let decision = if rng.below(2) == 0 {
                Decision::Commit
            } else {
                Decision::Abort
            };
            if state == RecordedState::Started {
                states[index].1 = decision.recorded_state();
            }
            ops.push(Op::Decision {
                transfer_id,
                decision,
                failure_reason: (decision == Decision::Abort).then(|| "refused".to_owned()),
                now_ms,
            });
        } else {
            let outcome = match state {
                RecordedState::Committed | RecordedState::Succeeded => RecordedState::Succeeded,
                _ => RecordedState::Failed,
            };
            states[index].1 = outcome;
            ops.push(Op::Outcome {
                transfer_id,
                outcome,
                now_ms,
            });
        }
    }
    ops
}

async fn open(url: &str) -> Db {
    let db = db::connect(url, PoolSettings::default())
        .await
        .expect("connect");
    db::migrate(&db, &MIGRATIONS).await.expect("migrate");
    db
}

async fn rows(db: &Db) -> Vec<TransferRecord> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM transfers ORDER BY transfer_id"
    ))
    .fetch_all(&db.pool)
    .await
    .expect("read the log");
    rows.iter()
        .map(|row| record_from_row(row).expect("a row"))
        .collect()
}

#[tokio::test]
async fn batches_write_what_one_at_a_time_writes() {
    for seed in 1..=6_u64 {
        let name = format!("log_batch_{seed}");
        let mut databases = vec![(
            testkit::db::sqlite(&format!("{name}_alone")),
            testkit::db::sqlite(&format!("{name}_batched")),
        )];
        if let (Some(alone), Some(batched)) = (
            testkit::db::postgres(&format!("{name}_alone")).await,
            testkit::db::postgres(&format!("{name}_batched")).await,
        ) {
            databases.push((alone, batched));
        }
        for (alone_db, batched_db) in databases {
            let backend = alone_db.backend;
            let context = format!("seed {seed}, {backend:?}");
            let (alone, batched) = (open(&alone_db.url).await, open(&batched_db.url).await);
            let jobs: Vec<LogWrite> = writes(seed, 150)
                .into_iter()
                .map(|op| LogWrite { backend, op })
                .collect();

            let mut expected = Vec::new();
            let mut conn = alone.pool.acquire().await.expect("a connection");
            for job in &jobs {
                expected.push(job.run_alone(&mut conn).await.expect(&context));
            }
            drop(conn);

            let mut rng = SimRng::new(seed ^ 0x10C);
            let mut got = Vec::new();
            let mut rest: &[LogWrite] = &jobs;
            while !rest.is_empty() {
                let take = (1 + rng.below(16) as usize).min(rest.len());
                let (batch, after) = rest.split_at(take);
                let batch: Vec<&LogWrite> = batch.iter().collect();
                let mut tx = batched.pool.begin().await.expect("begin");
                got.extend(write_many(&mut tx, &batch).await.expect(&context));
                tx.commit().await.expect("commit");
                rest = after;
            }

            assert_eq!(got.len(), expected.len(), "{context}");
            for (index, (got, expected)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got, expected,
                    "write {index}: {:?}; {context}",
                    jobs[index].op
                );
            }
            assert_eq!(rows(&batched).await, rows(&alone).await, "{context}");
            assert_covers_every_case(&jobs, &expected, &context);
        }
    }
}

/// The cases a batch must get right all occurred, so that agreement means something.
fn assert_covers_every_case(jobs: &[LogWrite], answers: &[Written], context: &str) {
    let mut taken_key = false;
    let mut lost_decision = false;
    let mut outcome_again = false;
    let mut created = false;
    for (job, answer) in jobs.iter().zip(answers) {
        match (&job.op, answer) {
            (Op::Intent(_), Written::Intent(Intent::Created(_))) => created = true,
            (Op::Intent(_), Written::Intent(Intent::Existing(_))) => taken_key = true,
            (Op::Decision { decision, .. }, Written::Record(record)) => {
                lost_decision |= record.state != decision.recorded_state();
            }
            (Op::Outcome { now_ms, .. }, Written::Record(record)) => {
                outcome_again |= record.updated_at_ms != *now_ms;
            }
            (op, answer) => panic!("{op:?} answered {answer:?}; {context}"),
        }
    }
    for (case, seen) in [
        ("an intent created", created),
        ("a taken key", taken_key),
        ("a decision that lost its compare-and-set", lost_decision),
        ("an outcome recorded again", outcome_again),
    ] {
        assert!(seen, "no {case} among the writes; {context}");
    }
}

#[test]
fn a_segment_ends_before_a_repeated_transfer_or_key() {
    let intent = |transfer: &str, key: &str| LogWrite {
        backend: Backend::Sqlite,
        op: Op::Intent(NewTransfer {
            transfer_id: transfer.into(),
            user_id: "ann".into(),
            idempotency_key: key.into(),
            fingerprint: "fp".into(),
            external_account_id: "ext".into(),
            internal_account_id: "int".into(),
            amount: Money::positive(1, "USD").unwrap(),
            created_at_ms: 1,
            next_attempt_at_ms: 2,
            trace_context: None,
        }),
    };
    let decide = |transfer: &str| LogWrite {
        backend: Backend::Sqlite,
        op: Op::Decision {
            transfer_id: transfer.into(),
            decision: Decision::Commit,
            failure_reason: None,
            now_ms: 3,
        },
    };
    let (a, b, a_key_again, decide_a) = (
        intent("t1", "k1"),
        intent("t2", "k2"),
        intent("t3", "k1"),
        decide("t1"),
    );
    assert_eq!(segment_len(&[&a, &b]), 2);
    assert_eq!(segment_len(&[&a, &b, &a_key_again]), 2, "same key");
    assert_eq!(
        segment_len(&[&a, &decide("t2"), &decide_a]),
        2,
        "same transfer"
    );
    assert_eq!(segment_len(&[&decide_a]), 1);
}

/// Inside a batch's transaction, the decisions and outcomes find their transfers by
/// primary key on PostgreSQL, even on a young table where the planner would rather
/// read it whole.
#[tokio::test]
async fn batched_statements_use_the_primary_key_on_postgres() {
    let Some(test_db) = testkit::db::postgres("log_batch_plans").await else {
        return;
    };
    let db = open(&test_db.url).await;
    sqlx::query(
        "INSERT INTO transfers (transfer_id, user_id, idempotency_key, fingerprint, \
         external_account_id, internal_account_id, amount_minor, currency, state, \
         created_at_ms, updated_at_ms, attempts, next_attempt_at_ms) \
         SELECT 't' || g, 'u', 'k' || g, 'f', 'e', 'i', 1, 'USD', 'started', 0, 0, 0, 0 \
         FROM generate_series(1, 20) AS g",
    )
    .execute(&db.pool)
    .await
    .expect("a young log");
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    let mut tx = db
        .pool
        .begin_with(service_kit::group_commit::POSTGRES_BATCH_BEGIN)
        .await
        .expect("begin a batch");
    let sql = LogBatchSql::of(Backend::Postgres);
    let rows = r#"[{"id": "t1", "new_state": "committed", "old_state": "started",
        "reason": null, "at_ms": 1}]"#;
    for (name, statement) in [
        ("decisions", sql.record_decisions),
        ("outcomes", sql.record_outcomes),
    ] {
        testkit::db::assert_no_seq_scan(&mut tx, name, statement, rows).await;
    }
}
