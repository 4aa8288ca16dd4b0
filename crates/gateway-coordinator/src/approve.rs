//! ApproveTransfer: record the intent, then drive it within the client's budget; or, when
//! the idempotency key is already taken, answer for the transfer that holds it. A drive
//! answers SUCCEEDED once both legs have confirmed; the outcome's write then finishes in a
//! task of its own (one commit fewer on the client's path), and a read of the transfer
//! before it lands finds the legs' confirms instead ([`Approver::as_read`]).
//!
//! A replay never moves money a second time: it only reads the existing record, waits a
//! little for its live driver, or (when the transfer is stale by the reconciler's own
//! rule) aborts it through the same compare-and-set as everyone else. When that driver
//! runs in this process, the replay waits for its end in memory ([`crate::live`]) instead
//! of polling the log.

use std::sync::Arc;
use std::time::Duration;

use banktransfer_protocol::budget::{Budget, BudgetPolicy};
use banktransfer_protocol::reconcile::{self, AbortedBy, Takeover};
use banktransfer_protocol::transfer::{ClientStatus, RecordedState};
use service_kit::clock::SharedClock;

use crate::convert::TransferRequest;
use crate::live::{LiveDrives, Watch};
use coordinator::driver::{Answered, Deadlines, Driver};
use coordinator::participants::{CallError, Participants};
use tracing::Instrument;

use coordinator::store::{
    Intent, NewTransfer, StoreError, TransferRecord, TransferStore, within_deadline,
};

/// How often a replay re-reads a transfer that another process (or an abandoned request)
/// may still be driving: first after this long, then twice as long each time...
const POLL_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// ... up to this: a replay stuck on a slow transfer costs a few reads, not one per 10 ms.
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(40);

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("idempotency key {0:?} was already used for a different request")]
    KeyReused(String),
    /// Nothing is known to have happened, or the decision is unknown: retry later.
    /// `transfer_id` is the transfer the request stands for (recorded or not): the
    /// reference the client is given and the log line carries.
    #[error("transfer {transfer_id}: {error}")]
    Store {
        transfer_id: String,
        error: StoreError,
    },
    /// The transfer is committed, and whether both legs have confirmed cannot be read
    /// now: PROCESSING could contradict a SUCCEEDED its client was already given.
    #[error(
        "transfer {transfer_id} is committed and being settled, but its state cannot be read \
         right now ({error}): retry shortly"
    )]
    LegsUnreadable {
        transfer_id: String,
        error: CallError,
    },
}

impl ApproveError {
    fn store(transfer_id: &str) -> impl FnOnce(StoreError) -> ApproveError + '_ {
        move |error| ApproveError::Store {
            transfer_id: transfer_id.to_owned(),
            error,
        }
    }
}

/// What the client is told when the transfer log fails: a retry with the same key
/// returns the real outcome.
pub const STORE_RETRY: &str = "retry with the same idempotency key";

impl From<ApproveError> for tonic::Status {
    fn from(err: ApproveError) -> tonic::Status {
        match &err {
            ApproveError::KeyReused(_) => tonic::Status::already_exists(err.to_string()),
            ApproveError::Store { transfer_id, error } => {
                coordinator::store_status(error, Some(transfer_id), STORE_RETRY)
            }
            ApproveError::LegsUnreadable { .. } => tonic::Status::unavailable(err.to_string()),
        }
    }
}

/// Where new transfer ids come from. They are the idempotency key towards the
/// participants, so they must never repeat.
pub trait TransferIds: Send + Sync + 'static {
    fn next_transfer_id(&self) -> String;
}

/// UUID v7: unique and time-ordered. What the gateway uses; the deterministic simulation
/// gives a seeded sequence instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl TransferIds for UuidV7Ids {
    fn next_transfer_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// What ApproveTransfer found: the transfer, and whether this request drove it (created
/// its intent) or only answered for it (a replay).
#[derive(Clone, Debug)]
pub struct Approval {
    pub record: TransferRecord,
    pub drove: bool,
}

pub struct Approver<S, P> {
    store: Arc<S>,
    driver: Driver<S, P>,
    clock: SharedClock,
    policy: BudgetPolicy,
    ids: Arc<dyn TransferIds>,
    live: LiveDrives,
}

/// Drives tracked for in-process replays unless told otherwise (the default concurrency
/// limit's maximum: no more drives run at once).
const LIVE_DRIVES_MAX: usize =
    banktransfer_protocol::admission::limit::LimitPolicy::DEFAULT.limit_max as usize;

impl<S: TransferStore, P: Participants> Approver<S, P> {
    pub fn new(
        store: Arc<S>,
        driver: Driver<S, P>,
        clock: SharedClock,
        policy: BudgetPolicy,
    ) -> Approver<S, P> {
        Approver {
            store,
            driver,
            clock,
            policy,
            ids: Arc::new(UuidV7Ids),
            live: LiveDrives::new(LIVE_DRIVES_MAX),
        }
    }

    /// Tracks at most `entries_max` live drives for in-process replays (the gateway
    /// passes its concurrency limit's maximum).
    pub fn with_live_drives_max(mut self, entries_max: usize) -> Approver<S, P> {
        self.live = LiveDrives::new(entries_max);
        self
    }

    /// When `request`'s key is being driven in this process right now: waits (within
    /// `budget`) for that drive to end and answers its record, with no store access.
    /// None when there is no such drive, or it was abandoned before it ended (the caller
    /// then goes the usual way, through the transfer log).
    pub async fn join_live(
        &self,
        request: &TransferRequest,
        budget: &Budget,
    ) -> Option<Result<TransferRecord, ApproveError>> {
        let Watch {
            fingerprint,
            started,
            mut ended,
        } = self.live.find(&request.user_id, &request.idempotency_key)?;
        let span = tracing::info_span!("transfer", transfer_id = %started.transfer_id);
        let entered = span.enter();
        if fingerprint != request.fingerprint() {
            tracing::info!("idempotency key reused for a different request");
            return Some(Err(ApproveError::KeyReused(
                request.idempotency_key.clone(),
            )));
        }
        tracing::info!("replay of a transfer this process is driving: waiting for its end");
        let remaining_ms = Budget::remaining_ms(budget.settle_deadline_ms(), self.clock.now_ms());
        drop(entered);
        let waited = tokio::time::timeout(
            Duration::from_millis(remaining_ms),
            ended.wait_for(Option::is_some),
        )
        .await;
        match waited {
            // The drive ended: its final answer.
            Ok(Ok(record)) => record.clone().map(Ok),
            // Abandoned (its caller went away): the log knows where it stopped.
            Ok(Err(_closed)) => None,
            // Out of budget first: PROCESSING, as a polling replay would answer.
            Err(_elapsed) => Some(Ok(started)),
        }
    }

    /// `record` as a reader is told it: a commit whose legs have both confirmed reads as
    /// SUCCEEDED, as its client was told before the outcome's write landed
    /// ([`Driver::as_read`]). The legs are read within what is left of `budget`.
    pub async fn as_read(
        &self,
        record: TransferRecord,
        budget: &Budget,
    ) -> Result<TransferRecord, ApproveError> {
        let remaining_ms = Budget::remaining_ms(budget.settle_deadline_ms(), self.clock.now_ms());
        let transfer_id = record.transfer_id.clone();
        self.driver
            .as_read(record, Duration::from_millis(remaining_ms))
            .await
            .map_err(|error| ApproveError::LegsUnreadable { transfer_id, error })
    }

    /// Transfer ids from `ids` instead of UUID v7 (the deterministic simulation).
    pub fn with_ids(mut self, ids: Arc<dyn TransferIds>) -> Approver<S, P> {
        self.ids = ids;
        self
    }

    /// The transfer this request stands for, as far as it got within `budget`.
    pub async fn approve(
        &self,
        request: TransferRequest,
        budget: Budget,
    ) -> Result<Approval, ApproveError> {
        // Every line of this transfer's work carries its id (the driver logs inside); the
        // id is known once the intent is written (a replay finds an earlier one).
        let span = tracing::info_span!("transfer", transfer_id = tracing::field::Empty);
        let now_ms = self.clock.now_ms();
        let new = NewTransfer {
            transfer_id: self.ids.next_transfer_id(),
            fingerprint: request.fingerprint(),
            user_id: request.user_id,
            idempotency_key: request.idempotency_key,
            external_account_id: request.external_account_id,
            internal_account_id: request.internal_account_id,
            amount: request.amount,
            created_at_ms: now_ms,
            // The reconciler looks once this request's own budget is surely over.
            next_attempt_at_ms: now_ms + self.policy.total_ms,
            trace_context: span.in_scope(service_kit::traces::current_traceparent),
        };
        // Durable before anyone is called; an unreachable store means nothing happened.
        let intent = within_deadline(
            budget.settle_deadline_ms(),
            now_ms,
            self.store.insert_intent(&new),
        )
        .instrument(tracing::info_span!(parent: &span, "intent"))
        .await
        .map_err(ApproveError::store(&new.transfer_id))?;
        let (Intent::Created(record) | Intent::Existing(record)) = &intent;
        span.record("transfer_id", tracing::field::display(&record.transfer_id));
        // A replay is traced as its own request, linked to the transfer's trace.
        if let (Intent::Existing(_), Some(traceparent)) = (&intent, &record.trace_context) {
            service_kit::traces::link_to(&span, traceparent);
        }
        self.follow(intent, new, budget).instrument(span).await
    }

    async fn follow(
        &self,
        intent: Intent,
        new: NewTransfer,
        budget: Budget,
    ) -> Result<Approval, ApproveError> {
        match intent {
            Intent::Created(record) => {
                let live = self.live.register(&record);
                let Answered { driven, rest } = self
                    .driver
                    .begin_answering(record, Deadlines::from_budget(&budget))
                    .await;
                if let Some(live) = live {
                    live.finish(&driven.record);
                }
                if let Some(rest) = rest {
                    // The outcome's write, without the client waiting for it (one commit
                    // fewer on its path), and to its end even if the client goes away.
                    // Bounded: it is one write within the drive's settle deadline.
                    let driver = self.driver.clone();
                    tokio::spawn(
                        async move {
                            driver.finish(rest).await;
                        }
                        .in_current_span(),
                    );
                }
                answer(driven.record, driven.store_error).map(|record| Approval {
                    record,
                    drove: true,
                })
            }
            Intent::Existing(record) if record.fingerprint != new.fingerprint => {
                tracing::info!("idempotency key reused for a different request");
                Err(ApproveError::KeyReused(new.idempotency_key))
            }
            Intent::Existing(record) => self.replay(record, budget).await.map(|record| Approval {
                record,
                drove: false,
            }),
        }
    }

    /// Answers a replay from the existing record: polls while its own request may still
    /// be driving it, takes it over once it is stale (the reconciler's rule,
    /// `reconcile::takeover`).
    async fn replay(
        &self,
        mut record: TransferRecord,
        budget: Budget,
    ) -> Result<TransferRecord, ApproveError> {
        tracing::info!(
            recorded = record.state.as_str(),
            "replay of an existing transfer"
        );
        let mut poll_interval = POLL_INTERVAL_MIN;
        loop {
            let now_ms = self.clock.now_ms();
            let takeover =
                reconcile::takeover(record.state, record.created_at_ms, now_ms, &self.policy);
            if takeover == Takeover::Abort {
                let reason = reconcile::stale_abort_reason(&self.policy, AbortedBy::Replay);
                let driven = self
                    .driver
                    .resume(record, Some(reason), Deadlines::from_budget(&budget))
                    .await;
                return answer(driven.record, driven.store_error);
            }
            let settled = record.state.client_status() != ClientStatus::Processing;
            let out_of_budget =
                now_ms + poll_interval.as_millis() as u64 >= budget.settle_deadline_ms();
            if settled {
                return Ok(record);
            }
            if out_of_budget {
                return self.as_read(record, &budget).await;
            }
            tokio::time::sleep(poll_interval).await;
            poll_interval = (poll_interval * 2).min(POLL_INTERVAL_MAX);
            let read = self.store.get(&record.transfer_id);
            record = within_deadline(budget.settle_deadline_ms(), self.clock.now_ms(), read)
                .await
                .and_then(|found| {
                    found.ok_or_else(|| StoreError::Corrupt("the transfer vanished".into()))
                })
                .map_err(ApproveError::store(&record.transfer_id))?;
        }
    }
}

/// A drive that could not learn the decision answers UNAVAILABLE: the transfer stays
/// `started` and is aborted later (by the reconciler or a retry).
fn answer(
    record: TransferRecord,
    store_error: Option<StoreError>,
) -> Result<TransferRecord, ApproveError> {
    match store_error {
        Some(err) if record.state == RecordedState::Started => Err(ApproveError::Store {
            transfer_id: record.transfer_id,
            error: StoreError::Unavailable(format!("the decision could not be recorded: {err}")),
        }),
        _ => Ok(record),
    }
}
