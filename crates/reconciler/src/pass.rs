//! One reconciliation pass: claim due transfers one at a time under a lease, decide with
//! `reconcile::takeover`, drive them with the coordinator's own driver, and reschedule
//! what is still unfinished with backoff.
//!
//! Safe with any number of replicas and across restarts: all state is in the transfer
//! log; a lease keeps two replicas off one transfer while it is worked on (and expires
//! when its replica dies); the decision's compare-and-set and the participants'
//! idempotency make even a doubly driven transfer harmless.

use std::sync::{Arc, Mutex};

use banktransfer_protocol::budget::BudgetPolicy;
use banktransfer_protocol::reconcile::{self, AbortedBy, RetryPolicy, Takeover};
use banktransfer_protocol::transfer::RecordedState;
use coordinator::driver::{Deadlines, Driver};
use coordinator::participants::Participants;
use coordinator::pause::PausePoints;
use coordinator::store::{StoreError, TransferRecord, TransferStore};
use service_kit::clock::SharedClock;
use service_kit::metrics;
use service_kit::shutdown::Shutdown;
use tracing::Instrument;

use crate::jitter::Jitter;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassOptions {
    /// Whose leases these are.
    pub replica_id: String,
    pub batch_size: u32,
    pub lease_ms: u64,
    pub call_timeout_ms: u64,
    pub attempts_alert: u32,
    pub retry: RetryPolicy,
    /// The gateway's budget: when an undecided transfer is stale.
    pub budget: BudgetPolicy,
}

/// What one pass did. A transfer aborted and then cancelled in the same pass counts as
/// both aborted and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Claimed and looked at.
    pub examined: u32,
    /// Undecided for too long: this pass recorded (or found) the abort.
    pub aborted: u32,
    pub succeeded: u32,
    pub failed: u32,
    /// Still unfinished (a participant did not answer); retried with backoff.
    pub retrying: u32,
}

pub struct Reconciler<S, P> {
    store: Arc<S>,
    driver: Driver<S, P>,
    clock: SharedClock,
    options: PassOptions,
    jitter: Mutex<Jitter>,
    /// One pass at a time per process (the schedule's and RunPass's).
    pass_lock: tokio::sync::Mutex<()>,
    /// Once triggered, a pass stops before its next transfer.
    shutdown: Option<Shutdown>,
}

impl<S: TransferStore, P: Participants> Reconciler<S, P> {
    pub fn new(
        store: Arc<S>,
        participants: Arc<P>,
        clock: SharedClock,
        options: PassOptions,
        jitter: Jitter,
    ) -> Reconciler<S, P> {
        let driver = Driver::new(
            Arc::clone(&store),
            participants,
            Arc::clone(&clock),
            PausePoints::off(),
        );
        Reconciler {
            store,
            driver,
            clock,
            options,
            jitter: Mutex::new(jitter),
            pass_lock: tokio::sync::Mutex::new(()),
            shutdown: None,
        }
    }

    /// Passes stop between transfers once `shutdown` is triggered.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Reconciler<S, P> {
        self.shutdown = Some(shutdown);
        self
    }

    pub fn replica_id(&self) -> &str {
        &self.options.replica_id
    }

    fn stopping(&self) -> bool {
        self.shutdown.as_ref().is_some_and(Shutdown::is_triggered)
    }

    /// One pass over the transfers due now, at most `batch_size` of them.
    pub async fn run_pass(&self) -> Result<PassReport, StoreError> {
        let _one_at_a_time = self.pass_lock.lock().await;
        let due = self
            .store
            .list_due(self.clock.now_ms(), self.options.batch_size)
            .await?;
        self.sample_backlog().await;
        let mut report = PassReport::default();
        for candidate in due {
            if self.stopping() {
                tracing::info!("shutting down: leaving the rest of the batch");
                break;
            }
            // A trace of its own (nobody waits on it), named `reconcile`, linked to the
            // trace of the request that started the transfer.
            let span = tracing::info_span!(
                "transfer",
                otel.name = "reconcile",
                transfer_id = %candidate.transfer_id
            );
            if let Some(traceparent) = &candidate.trace_context {
                service_kit::traces::link_to(&span, traceparent);
            }
            match self.reconcile(&candidate).instrument(span).await {
                Ok(Some(handled)) => handled.count(&mut report),
                Ok(None) => {}
                // One transfer's trouble must not stop the pass; its lease expires.
                Err(err) => tracing::warn!(
                    transfer_id = %candidate.transfer_id,
                    error = ?err,
                    "reconciling failed; retried once the lease expires"
                ),
            }
        }
        Ok(report)
    }

    /// Publishes the backlog (`banktransfer_reconciler_backlog{state}` and the oldest's
    /// age) once per pass, when metrics are on. A failed count only leaves the last one.
    async fn sample_backlog(&self) {
        if !metrics::enabled() {
            return;
        }
        match self.store.backlog().await {
            Ok(backlog) => {
                for (state, count) in [
                    ("started", backlog.started),
                    ("committed", backlog.committed),
                    ("aborted", backlog.aborted),
                ] {
                    metrics::gauge!(metrics::RECONCILER_BACKLOG, "state" => state)
                        .set(count as f64);
                }
                let age_ms = backlog
                    .oldest_created_at_ms
                    .map_or(0, |oldest| self.clock.now_ms().saturating_sub(oldest));
                metrics::gauge!(metrics::RECONCILER_BACKLOG_OLDEST_AGE_SECONDS)
                    .set(age_ms as f64 / 1000.0);
            }
            Err(error) => tracing::warn!(?error, "cannot count the backlog for metrics"),
        }
    }

    /// Releases every lease this replica holds (graceful shutdown).
    pub async fn release_leases(&self) {
        match self.store.release_all(&self.options.replica_id).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "leases released"),
            Err(err) => tracing::warn!(error = ?err, "cannot release leases; they will expire"),
        }
    }

    /// None when another replica holds the transfer or it is no longer due.
    async fn reconcile(&self, candidate: &TransferRecord) -> Result<Option<Handled>, StoreError> {
        let me = self.options.replica_id.as_str();
        let id = candidate.transfer_id.as_str();
        let now_ms = self.clock.now_ms();
        if !self
            .store
            .claim(id, me, now_ms, now_ms + self.options.lease_ms)
            .await?
        {
            return Ok(None);
        }
        // Read again under the lease: the listing may be stale.
        let record = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("transfer {id} vanished")))?;
        let policy = &self.options.retry;
        let budget = &self.options.budget;
        let takeover = reconcile::takeover(record.state, record.created_at_ms, now_ms, budget);
        let abort_reason = match takeover {
            Takeover::Wait => {
                // Its own request may still decide: look again once it would be stale.
                let wake_at_ms = reconcile::stale_at_ms(record.created_at_ms, budget);
                self.store.reschedule(id, me, wake_at_ms, false).await?;
                return Ok(Some(Handled::Waiting));
            }
            Takeover::Done => {
                self.store.release(id, me).await?;
                return Ok(Some(Handled::AlreadyFinal));
            }
            Takeover::Abort => Some(reconcile::stale_abort_reason(budget, AbortedBy::Reconciler)),
            Takeover::Finish => None,
        };
        let attempts = record.attempts;
        let deadlines = Deadlines::recovery(now_ms, self.options.call_timeout_ms);
        let driven = self.driver.resume(record, abort_reason, deadlines).await;
        let state = driven.record.state;
        let aborted = takeover == Takeover::Abort
            && matches!(state, RecordedState::Aborted | RecordedState::Failed);
        if driven.is_final() {
            self.store.release(id, me).await?;
            return Ok(Some(Handled::Driven { aborted, state }));
        }
        let attempts = attempts.saturating_add(1);
        let draw = self.jitter.lock().expect("jitter lock").next_permille();
        let next_ms =
            reconcile::next_attempt_at_ms(self.clock.now_ms(), attempts - 1, policy, draw);
        if attempts > self.options.attempts_alert {
            tracing::error!(
                attempts,
                recorded = state.as_str(),
                "transfer still unfinished after {attempts} attempts: a participant keeps failing"
            );
        } else {
            tracing::info!(
                attempts,
                recorded = state.as_str(),
                next_ms,
                "unfinished; will retry"
            );
        }
        self.store.reschedule(id, me, next_ms, true).await?;
        Ok(Some(Handled::Driven { aborted, state }))
    }
}

/// What happened to one claimed transfer.
enum Handled {
    /// Undecided and still within its own request's reach.
    Waiting,
    /// Found final already (another replica finished it after this one listed it).
    AlreadyFinal,
    /// Driven this pass; `state` is where it got.
    Driven { aborted: bool, state: RecordedState },
}

impl Handled {
    fn count(&self, report: &mut PassReport) {
        report.examined += 1;
        if let Handled::Driven { aborted, state } = self {
            report.aborted += u32::from(*aborted);
            match state {
                RecordedState::Succeeded => report.succeeded += 1,
                RecordedState::Failed => report.failed += 1,
                RecordedState::Started | RecordedState::Committed | RecordedState::Aborted => {
                    report.retrying += 1;
                }
            }
        }
    }
}
