//! [`MemoryTransferStore`]: the coordinator's transfer log in memory, for the
//! deterministic simulation (sqlx's SQLite runs on OS threads, which a simulated clock and
//! network cannot order).
//!
//! Each method does what its SQL statement in `coordinator::store` does, with the same
//! guards: the decision is a compare-and-set from `started`, the outcome is guarded by
//! the decision, a lease is taken only on a due, unfinished transfer whose lease has
//! expired, and only the lease's owner reschedules or releases. One lock held from the
//! guard to the write stands for the single guarded statement. What it adds is what a
//! simulation needs from a database it owns:
//! - planned store failures ([`crate::sim_db`]): delays, statements in flight, an
//!   unreachable database ([`StoreError::Unavailable`]), replies lost after the commit;
//! - [`MemoryTransferStore::snapshot`]: every record, read without failures, for invariant
//!   checks;
//! - [`StoreMutation`]: TEST-ONLY removal of one safety mechanism, so that the simulation
//!   can show it notices.

use std::collections::BTreeMap;
use std::sync::Arc;

use banktransfer_protocol::transfer::{Decision, RecordedState};
use coordinator::store::{Backlog, Intent, NewTransfer, StoreError, TransferRecord, TransferStore};

use crate::sim_db::{self, FailurePlanner, SimDatabase, StoreFailures};

/// Which store call a failure plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreCall {
    InsertIntent,
    Get,
    FindByKey,
    RecordDecision,
    RecordOutcome,
    ListDue,
    Claim,
    Reschedule,
    Release,
    ReleaseAll,
    Recent,
}

/// TEST-ONLY: a safety mechanism the store leaves out, to show the simulation catches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreMutation {
    #[default]
    None,
    /// The decision is written whatever the record holds (the UPDATE without its
    /// `state = 'started'` guard): the last writer wins instead of the first.
    IgnoreDecisionGuard,
}

#[derive(Debug, Default)]
struct Tables {
    /// By transfer id.
    transfers: BTreeMap<String, TransferRecord>,
    /// (user_id, idempotency_key) -> transfer id: the unique index.
    keys: BTreeMap<(String, String), String>,
}

type Database = SimDatabase<Tables, StoreMutation>;

/// A handle on one in-memory transfer log: clones share it, as the gateway and the
/// reconciler share their database, and a simulated process that restarts finds it as
/// it was.
#[derive(Clone)]
pub struct MemoryTransferStore {
    db: Arc<Database>,
    failures: StoreFailures<StoreCall>,
}

impl Default for MemoryTransferStore {
    fn default() -> Self {
        MemoryTransferStore {
            db: Arc::new(SimDatabase::new(Tables::default(), StoreMutation::None)),
            failures: StoreFailures::default(),
        }
    }
}

impl MemoryTransferStore {
    pub fn new() -> MemoryTransferStore {
        MemoryTransferStore::default()
    }

    /// Every call's delays and failures are planned by `planner`.
    pub fn with_failures(mut self, planner: FailurePlanner<StoreCall>) -> MemoryTransferStore {
        self.failures = StoreFailures::planned(planner);
        self
    }

    /// TEST-ONLY: see [`StoreMutation`]. Before any clone.
    pub fn with_mutation(mut self, mutation: StoreMutation) -> MemoryTransferStore {
        sim_db::before_sharing(&mut self.db).set_mutation(mutation);
        self
    }

    /// Every record, by transfer id, as committed; never planned, never failed.
    pub fn snapshot(&self) -> BTreeMap<String, TransferRecord> {
        self.db.lock().transfers.clone()
    }

    /// Reads the records in place (invariant checks without a copy).
    pub fn inspect<T>(&self, read: impl FnOnce(&BTreeMap<String, TransferRecord>) -> T) -> T {
        read(&self.db.lock().transfers)
    }

    /// How many changes were applied so far: equal versions, equal states.
    pub fn version(&self) -> u64 {
        self.db.version()
    }

    /// Runs `statement` as `call` is planned: delayed, in flight, failed, or its reply
    /// lost.
    async fn execute<T: Send + 'static>(
        &self,
        call: StoreCall,
        statement: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let plan = self.failures.plan(call);
        sim_db::run_planned(Arc::clone(&self.db), plan, statement, unreachable).await
    }
}

impl TransferStore for MemoryTransferStore {
    async fn insert_intent(&self, new: &NewTransfer) -> Result<Intent, StoreError> {
        let new = new.clone();
        self.execute(StoreCall::InsertIntent, move |db| {
            let mut tables = db.lock();
            let key = (new.user_id.clone(), new.idempotency_key.clone());
            // ON CONFLICT DO NOTHING: on the key's unique index or the primary key.
            if !tables.keys.contains_key(&key) && !tables.transfers.contains_key(&new.transfer_id) {
                tables.keys.insert(key.clone(), new.transfer_id.clone());
                tables
                    .transfers
                    .insert(new.transfer_id.clone(), intent_record(&new));
                db.changed();
            }
            // Whoever holds the key now: us, or the request that got there first.
            match tables
                .keys
                .get(&key)
                .and_then(|id| tables.transfers.get(id))
            {
                Some(record) if record.transfer_id == new.transfer_id => {
                    Ok(Intent::Created(record.clone()))
                }
                Some(record) => Ok(Intent::Existing(record.clone())),
                None => Err(StoreError::Corrupt(format!(
                    "idempotency key {:?} of user {:?} vanished after its insert",
                    new.idempotency_key, new.user_id
                ))),
            }
        })
        .await
    }

    async fn get(&self, transfer_id: &str) -> Result<Option<TransferRecord>, StoreError> {
        let transfer_id = transfer_id.to_owned();
        self.execute(StoreCall::Get, move |db| {
            Ok(db.lock().transfers.get(&transfer_id).cloned())
        })
        .await
    }

    async fn find_by_key(
        &self,
        user_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<TransferRecord>, StoreError> {
        let key = (user_id.to_owned(), idempotency_key.to_owned());
        self.execute(StoreCall::FindByKey, move |db| {
            let tables = db.lock();
            Ok(tables
                .keys
                .get(&key)
                .and_then(|id| tables.transfers.get(id))
                .cloned())
        })
        .await
    }

    async fn record_decision(
        &self,
        transfer_id: &str,
        decision: Decision,
        failure_reason: Option<&str>,
        now_ms: u64,
    ) -> Result<TransferRecord, StoreError> {
        let transfer_id = transfer_id.to_owned();
        let failure_reason = failure_reason.map(str::to_owned);
        self.execute(StoreCall::RecordDecision, move |db| {
            let guard_ignored = db.mutation() == StoreMutation::IgnoreDecisionGuard;
            let mut tables = db.lock();
            let Some(record) = tables.transfers.get_mut(&transfer_id) else {
                return Err(StoreError::Corrupt(format!(
                    "transfer {transfer_id} is missing"
                )));
            };
            if record.state == RecordedState::Started || guard_ignored {
                record.state = decision.recorded_state();
                record.failure_reason = failure_reason;
                record.decided_at_ms = Some(now_ms);
                record.updated_at_ms = now_ms;
                db.changed();
            }
            if record.state.is_decided() {
                Ok(record.clone())
            } else {
                Err(StoreError::Corrupt(format!(
                    "transfer {transfer_id} is still undecided after its compare-and-set"
                )))
            }
        })
        .await
    }

    async fn record_outcome(
        &self,
        transfer_id: &str,
        outcome: RecordedState,
        now_ms: u64,
    ) -> Result<TransferRecord, StoreError> {
        let expected = match outcome {
            RecordedState::Succeeded => RecordedState::Committed,
            RecordedState::Failed => RecordedState::Aborted,
            other => panic!("{other:?} is not an outcome"),
        };
        let transfer_id = transfer_id.to_owned();
        self.execute(StoreCall::RecordOutcome, move |db| {
            let mut tables = db.lock();
            let Some(record) = tables.transfers.get_mut(&transfer_id) else {
                return Err(StoreError::Corrupt(format!(
                    "transfer {transfer_id} is missing"
                )));
            };
            if record.state == expected {
                record.state = outcome;
                record.updated_at_ms = now_ms;
                db.changed();
            }
            if record.state == outcome {
                Ok(record.clone())
            } else {
                Err(StoreError::Corrupt(format!(
                    "transfer {transfer_id} is {} after recording {}",
                    record.state.as_str(),
                    outcome.as_str()
                )))
            }
        })
        .await
    }

    async fn list_due(&self, now_ms: u64, limit: u32) -> Result<Vec<TransferRecord>, StoreError> {
        self.execute(StoreCall::ListDue, move |db| {
            let tables = db.lock();
            let mut due: Vec<TransferRecord> = tables
                .transfers
                .values()
                .filter(|r| {
                    !r.state.is_final()
                        && r.next_attempt_at_ms <= now_ms
                        && lease_expired(r, now_ms)
                })
                .cloned()
                .collect();
            due.sort_by(|a, b| {
                (a.next_attempt_at_ms, &a.transfer_id).cmp(&(b.next_attempt_at_ms, &b.transfer_id))
            });
            due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Ok(due)
        })
        .await
    }

    async fn claim(
        &self,
        transfer_id: &str,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<bool, StoreError> {
        let transfer_id = transfer_id.to_owned();
        let owner = owner.to_owned();
        self.execute(StoreCall::Claim, move |db| {
            let mut tables = db.lock();
            match tables.transfers.get_mut(&transfer_id) {
                Some(record)
                    if lease_expired(record, now_ms)
                        && !record.state.is_final()
                        && record.next_attempt_at_ms <= now_ms =>
                {
                    record.lease_owner = Some(owner);
                    record.lease_until_ms = Some(lease_until_ms);
                    db.changed();
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn reschedule(
        &self,
        transfer_id: &str,
        owner: &str,
        next_attempt_at_ms: u64,
        count_attempt: bool,
    ) -> Result<(), StoreError> {
        let transfer_id = transfer_id.to_owned();
        let owner = owner.to_owned();
        self.execute(StoreCall::Reschedule, move |db| {
            let mut tables = db.lock();
            if let Some(record) = tables.transfers.get_mut(&transfer_id)
                && record.lease_owner.as_deref() == Some(owner.as_str())
            {
                record.attempts = record.attempts.saturating_add(u32::from(count_attempt));
                record.next_attempt_at_ms = next_attempt_at_ms;
                record.lease_owner = None;
                record.lease_until_ms = None;
                db.changed();
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, transfer_id: &str, owner: &str) -> Result<(), StoreError> {
        let transfer_id = transfer_id.to_owned();
        let owner = owner.to_owned();
        self.execute(StoreCall::Release, move |db| {
            let mut tables = db.lock();
            if let Some(record) = tables.transfers.get_mut(&transfer_id)
                && record.lease_owner.as_deref() == Some(owner.as_str())
            {
                record.lease_owner = None;
                record.lease_until_ms = None;
                db.changed();
            }
            Ok(())
        })
        .await
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.execute(StoreCall::ReleaseAll, move |db| {
            let mut tables = db.lock();
            let mut released = 0;
            for record in tables.transfers.values_mut() {
                if record.lease_owner.as_deref() == Some(owner.as_str()) {
                    record.lease_owner = None;
                    record.lease_until_ms = None;
                    released += 1;
                }
            }
            if released > 0 {
                db.changed();
            }
            Ok(released)
        })
        .await
    }

    async fn recent(&self, limit: u32) -> Result<Vec<TransferRecord>, StoreError> {
        self.execute(StoreCall::Recent, move |db| {
            let tables = db.lock();
            let mut recent: Vec<TransferRecord> = tables.transfers.values().cloned().collect();
            recent.sort_by(|a, b| {
                (b.created_at_ms, &b.transfer_id).cmp(&(a.created_at_ms, &a.transfer_id))
            });
            recent.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Ok(recent)
        })
        .await
    }

    /// A plain read, outside the failure plans: only metrics ask for it.
    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let mut backlog = Backlog::default();
        for record in self.db.lock().transfers.values() {
            backlog.add(record.state, 1, record.created_at_ms);
        }
        Ok(backlog)
    }
}

/// `lease_until_ms IS NULL OR lease_until_ms < now`.
fn lease_expired(record: &TransferRecord, now_ms: u64) -> bool {
    record.lease_until_ms.is_none_or(|until| until < now_ms)
}

fn intent_record(new: &NewTransfer) -> TransferRecord {
    TransferRecord {
        transfer_id: new.transfer_id.clone(),
        user_id: new.user_id.clone(),
        idempotency_key: new.idempotency_key.clone(),
        fingerprint: new.fingerprint.clone(),
        external_account_id: new.external_account_id.clone(),
        internal_account_id: new.internal_account_id.clone(),
        amount: new.amount,
        state: RecordedState::Started,
        failure_reason: None,
        created_at_ms: new.created_at_ms,
        decided_at_ms: None,
        updated_at_ms: new.created_at_ms,
        attempts: 0,
        next_attempt_at_ms: new.next_attempt_at_ms,
        trace_context: new.trace_context.clone(),
        lease_owner: None,
        lease_until_ms: None,
    }
}

/// What the SQL store reports when its pool cannot reach the database.
fn unreachable() -> StoreError {
    StoreError::Unavailable("pool timed out while waiting for an open connection".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use banktransfer_protocol::money::Money;

    use super::*;
    use crate::sim_db::{Failure, FailurePlan};

    fn intent(transfer_id: &str, key: &str) -> NewTransfer {
        NewTransfer {
            transfer_id: transfer_id.into(),
            user_id: "alice".into(),
            idempotency_key: key.into(),
            fingerprint: "f".into(),
            external_account_id: "ext".into(),
            internal_account_id: "int".into(),
            amount: Money::positive(10, "USD").unwrap(),
            created_at_ms: 1_000,
            next_attempt_at_ms: 1_200,
            trace_context: None,
        }
    }

    #[tokio::test]
    async fn the_first_decision_wins_unless_mutated() {
        let store = MemoryTransferStore::new();
        store.insert_intent(&intent("t1", "k1")).await.unwrap();
        let first = store
            .record_decision("t1", Decision::Commit, None, 1_100)
            .await
            .unwrap();
        assert_eq!(first.state, RecordedState::Committed);
        let second = store
            .record_decision("t1", Decision::Abort, Some("late"), 1_200)
            .await
            .unwrap();
        assert_eq!(second.state, RecordedState::Committed);

        let mutated = MemoryTransferStore::new().with_mutation(StoreMutation::IgnoreDecisionGuard);
        mutated.insert_intent(&intent("t1", "k1")).await.unwrap();
        mutated
            .record_decision("t1", Decision::Commit, None, 1_100)
            .await
            .unwrap();
        let overwritten = mutated
            .record_decision("t1", Decision::Abort, Some("late"), 1_200)
            .await
            .unwrap();
        assert_eq!(overwritten.state, RecordedState::Aborted);
    }

    #[tokio::test]
    async fn keys_resolve_to_the_first_intent() {
        let store = MemoryTransferStore::new();
        let created = store.insert_intent(&intent("t1", "k1")).await.unwrap();
        assert!(matches!(created, Intent::Created(_)));
        let again = store.insert_intent(&intent("t2", "k1")).await.unwrap();
        assert!(matches!(again, Intent::Existing(ref r) if r.transfer_id == "t1"));
        assert!(store.get("t2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn leases_keep_other_owners_out_until_they_expire() {
        let store = MemoryTransferStore::new();
        store.insert_intent(&intent("t1", "k1")).await.unwrap();
        assert!(store.list_due(1_199, 10).await.unwrap().is_empty());
        assert_eq!(store.list_due(1_200, 10).await.unwrap().len(), 1);
        assert!(store.claim("t1", "a", 1_200, 2_000).await.unwrap());
        assert!(!store.claim("t1", "b", 1_500, 2_500).await.unwrap());
        assert!(store.list_due(1_500, 10).await.unwrap().is_empty());
        store.reschedule("t1", "b", 9_000, true).await.unwrap();
        assert_eq!(store.get("t1").await.unwrap().unwrap().attempts, 0);
        assert!(store.claim("t1", "b", 2_001, 3_000).await.unwrap());
        store.reschedule("t1", "b", 9_000, true).await.unwrap();
        let record = store.get("t1").await.unwrap().unwrap();
        assert_eq!((record.attempts, record.lease_owner), (1, None));
    }

    #[tokio::test]
    async fn a_statement_in_flight_lands_even_when_its_caller_gives_up() {
        let plan = Arc::new(Mutex::new(FailurePlan::default()));
        let planned = Arc::clone(&plan);
        let store =
            MemoryTransferStore::new().with_failures(Arc::new(move |_| *planned.lock().unwrap()));
        plan.lock().unwrap().in_flight = Duration::from_millis(50);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            store.insert_intent(&intent("t1", "k1")),
        )
        .await;
        assert!(gave_up.is_err());
        assert!(store.snapshot().is_empty());
        // Lands on its own, however slow this machine is (bounded).
        for _ in 0..500 {
            if store.snapshot().contains_key("t1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.snapshot()["t1"].state, RecordedState::Started);

        // Waiting for a connection is different: a caller that gives up sends nothing.
        *plan.lock().unwrap() = FailurePlan {
            delay: Duration::from_millis(50),
            ..FailurePlan::default()
        };
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            store.insert_intent(&intent("t2", "k2")),
        )
        .await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!store.snapshot().contains_key("t2"));
    }

    #[tokio::test]
    async fn planned_failures_fail_before_or_after_applying() {
        let plan = Arc::new(Mutex::new(FailurePlan::default()));
        let planned = Arc::clone(&plan);
        let store =
            MemoryTransferStore::new().with_failures(Arc::new(move |_| *planned.lock().unwrap()));
        plan.lock().unwrap().failure = Failure::Unreachable;
        let err = store.insert_intent(&intent("t1", "k1")).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert!(store.snapshot().is_empty());
        plan.lock().unwrap().failure = Failure::LostReply;
        let err = store.insert_intent(&intent("t1", "k1")).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert_eq!(store.snapshot()["t1"].state, RecordedState::Started);
    }
}
