//! The lone writes' durability on PostgreSQL: an outcome commits without waiting for the
//! WAL flush (`LogWrite::must_flush`), and nothing else does.

use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Decision, RecordedState};
use service_kit::db::{self, Backend, PoolSettings};
use service_kit::group_commit::Job;
use sqlx::Connection;

use super::{LogWrite, MIGRATIONS, NewTransfer, Op};

/// What `synchronous_commit` says inside the transaction of `op` run as a lone write, and
/// after it on the same connection. The write runs in a transaction opened here, so
/// that the setting can be read before the commit resets it.
async fn setting_during_and_after(conn: &mut sqlx::AnyConnection, op: Op) -> (String, String) {
    let job = LogWrite {
        backend: Backend::Postgres,
        op,
    };
    let mut tx = conn.begin().await.unwrap();
    job.run_alone(&mut tx).await.unwrap();
    let (during,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (after,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    (during, after)
}

#[tokio::test]
async fn only_an_outcome_commits_without_waiting_for_the_flush() {
    let Some(test_db) = testkit::db::postgres("log_lazy_outcome").await else {
        return;
    };
    let db = db::connect(&test_db.url, PoolSettings::default())
        .await
        .unwrap();
    db::migrate(&db, &MIGRATIONS).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let intent = Op::Intent(NewTransfer {
        transfer_id: "t1".to_owned(),
        user_id: "u1".to_owned(),
        idempotency_key: "k1".to_owned(),
        fingerprint: "f1".to_owned(),
        external_account_id: "e1".to_owned(),
        internal_account_id: "i1".to_owned(),
        amount: Money::positive(100, "USD").unwrap(),
        created_at_ms: 1_000,
        next_attempt_at_ms: 1_200,
        trace_context: None,
    });
    let decision = Op::Decision {
        transfer_id: "t1".to_owned(),
        decision: Decision::Commit,
        failure_reason: None,
        now_ms: 1_010,
    };
    let outcome = Op::Outcome {
        transfer_id: "t1".to_owned(),
        outcome: RecordedState::Succeeded,
        now_ms: 1_020,
    };
    for (op, lazy) in [(intent, false), (decision, false), (outcome, true)] {
        let job = LogWrite {
            backend: Backend::Postgres,
            op: op.clone(),
        };
        assert_eq!(job.must_flush(), !lazy, "{op:?}");
        let expected = if lazy { "off" } else { "on" };
        assert_eq!(
            setting_during_and_after(&mut conn, op.clone()).await,
            (expected.to_owned(), "on".to_owned()),
            "{op:?}: its own transaction only"
        );
    }
    let (state,): (String,) =
        sqlx::query_as("SELECT state FROM transfers WHERE transfer_id = 't1'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        state, "succeeded",
        "the lazy outcome is written all the same"
    );
}
