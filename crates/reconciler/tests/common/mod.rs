//! Shared by the reconciler's tests: stores on every back end, transfer fixtures, a
//! reconciler on a manual clock, and in-process services.

#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;

use banktransfer_protocol::budget::BudgetPolicy;
use banktransfer_protocol::fingerprint::request_fingerprint;
use banktransfer_protocol::money::Money;
use banktransfer_protocol::reconcile::RetryPolicy;
use coordinator::store::{MIGRATIONS, NewTransfer, SqlTransferStore};
use reconciler::jitter::Jitter;
use reconciler::pass::{PassOptions, Reconciler};
use service_kit::clock::{Clock, ManualClock, SystemClock};
use service_kit::db::{self, PoolSettings};
use testkit::db::TestDatabase;
use testkit::participants::FakeParticipants;

pub type TestReconciler = Reconciler<SqlTransferStore, FakeParticipants>;

pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A separate pool on the database: on SQLite, what another process would have.
pub async fn open_store(test_db: &TestDatabase) -> Arc<SqlTransferStore> {
    let db = db::connect(&test_db.url, PoolSettings::default())
        .await
        .unwrap();
    db::migrate(&db, &MIGRATIONS).await.unwrap();
    Arc::new(SqlTransferStore::new(db))
}

pub fn usd(minor_units: i64) -> Money {
    Money::positive(minor_units, "USD").unwrap()
}

/// An intent as the gateway records it at `created_at_ms` (due 200 ms later).
pub fn intent(user: &str, key: &str, created_at_ms: u64) -> NewTransfer {
    NewTransfer {
        transfer_id: uuid::Uuid::now_v7().to_string(),
        user_id: user.into(),
        idempotency_key: key.into(),
        fingerprint: request_fingerprint(user, "ext-1", "int-1", usd(100)),
        external_account_id: "ext-1".into(),
        internal_account_id: "int-1".into(),
        amount: usd(100),
        created_at_ms,
        next_attempt_at_ms: created_at_ms + 200,
    }
}

pub fn options(replica_id: &str) -> PassOptions {
    PassOptions {
        replica_id: replica_id.into(),
        batch_size: 100,
        lease_ms: 10_000,
        call_timeout_ms: 1_000,
        attempts_alert: 20,
        retry: RetryPolicy::DEFAULT,
        budget: BudgetPolicy::DEFAULT,
    }
}

pub fn reconciler(
    store: &Arc<SqlTransferStore>,
    fake: &Arc<FakeParticipants>,
    clock: &ManualClock,
    options: PassOptions,
) -> TestReconciler {
    Reconciler::new(
        Arc::clone(store),
        Arc::clone(fake),
        Arc::new(clock.clone()),
        options,
        Jitter::seeded(7),
    )
}
