//! The async shell around [`TransferMachine`]: carries out its effects (remote calls
//! concurrently, each with a deadline; store writes in order) and feeds it what came of
//! them, until the machine is idle or the caller's deadline leaves the rest to the
//! reconciler. Every decision is the machine's; this module only does I/O and keeps time.
//!
//! The gateway drives a fresh transfer with [`Driver::begin`] inside the client's budget;
//! the reconciler (and a replayed request taking over) picks one up with
//! [`Driver::resume`]. Callers open the `transfer` span (with its id) around a drive, so
//! every line the driver logs carries the transfer id once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use banktransfer_protocol::budget::Budget;
use banktransfer_protocol::transfer::{Effect, Event, Leg, RecordedState, TransferMachine};
use service_kit::clock::SharedClock;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::fault::{FaultPoint, FaultPoints};
use crate::participants::{Participants, ReserveTerms};
use crate::store::{StoreError, TransferRecord, TransferStore, within_deadline};

/// Absolute times (epoch ms) by which each phase must be over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Both reserves answered, or the machine aborts.
    pub reserve_deadline_ms: u64,
    /// Confirmations or cancellations answered, or the driver stops waiting and leaves
    /// them to the reconciler.
    pub settle_deadline_ms: u64,
}

impl Deadlines {
    /// A live request: the phases of the client's budget.
    pub fn from_budget(budget: &Budget) -> Deadlines {
        Deadlines {
            reserve_deadline_ms: budget.reserve_deadline_ms(),
            settle_deadline_ms: budget.settle_deadline_ms(),
        }
    }

    /// Recovery: every call gets `call_timeout_ms` from now.
    pub fn recovery(now_ms: u64, call_timeout_ms: u64) -> Deadlines {
        Deadlines {
            reserve_deadline_ms: now_ms + call_timeout_ms,
            settle_deadline_ms: now_ms + call_timeout_ms,
        }
    }
}

/// What one drive achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Driven {
    /// The row as this driver last saw it; `state` is what the machine knows to be
    /// durable.
    pub record: TransferRecord,
    /// The store failure that stopped the drive, if one did. With `record.state` still
    /// `Started`, the decision is unknown to this driver.
    pub store_error: Option<StoreError>,
}

impl Driven {
    /// Both legs acknowledged and the outcome is recorded.
    pub fn is_final(&self) -> bool {
        self.record.state.is_final()
    }
}

pub struct Driver<S, P> {
    store: Arc<S>,
    participants: Arc<P>,
    clock: SharedClock,
    faults: FaultPoints,
}

impl<S, P> Clone for Driver<S, P> {
    fn clone(&self) -> Self {
        Driver {
            store: Arc::clone(&self.store),
            participants: Arc::clone(&self.participants),
            clock: Arc::clone(&self.clock),
            faults: self.faults,
        }
    }
}

impl<S: TransferStore, P: Participants> Driver<S, P> {
    pub fn new(
        store: Arc<S>,
        participants: Arc<P>,
        clock: SharedClock,
        faults: FaultPoints,
    ) -> Driver<S, P> {
        Driver {
            store,
            participants,
            clock,
            faults,
        }
    }

    /// Drives a transfer whose intent was just recorded (`started`).
    pub async fn begin(&self, record: TransferRecord, deadlines: Deadlines) -> Driven {
        assert_eq!(
            record.state,
            RecordedState::Started,
            "begin needs a fresh intent"
        );
        tracing::info!(amount = %record.amount, "reserving on both legs");
        let (machine, effects) = TransferMachine::begin();
        self.run(machine, effects, record, deadlines, true).await
    }

    /// Picks a transfer up from its record alone. `abort_reason` aborts it when it is
    /// still undecided (its own driver is gone); without one, an undecided transfer is
    /// left alone.
    pub async fn resume(
        &self,
        record: TransferRecord,
        abort_reason: Option<String>,
        deadlines: Deadlines,
    ) -> Driven {
        tracing::info!(
            recorded = record.state.as_str(),
            abort_reason = abort_reason.as_deref().unwrap_or(""),
            "resuming"
        );
        let (machine, effects) =
            TransferMachine::resume(record.state, record.failure_reason.clone(), abort_reason);
        self.run(machine, effects, record, deadlines, false).await
    }

    async fn run(
        &self,
        mut machine: TransferMachine,
        effects: Vec<Effect>,
        mut record: TransferRecord,
        deadlines: Deadlines,
        reserving_at_start: bool,
    ) -> Driven {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut calls = Calls::default();
        // Until the decision is recorded, the reserve deadline is the one that counts.
        let mut reserving = reserving_at_start;
        let mut reserves_answered = 0;
        let mut store_error = None;

        loop {
            while let Some(effect) = queue.pop_front() {
                let events = match effect {
                    Effect::Reserve(leg) => {
                        self.spawn_reserve(&mut calls, &record, leg, deadlines);
                        continue;
                    }
                    Effect::Confirm(leg) | Effect::Cancel(leg) => {
                        self.spawn_settle(&mut calls, &record, effect.clone(), leg, deadlines);
                        continue;
                    }
                    Effect::RecordDecision {
                        decision,
                        failure_reason,
                    } => {
                        reserving = false;
                        if reserves_answered == Leg::BOTH.len() {
                            self.faults.reached(FaultPoint::AfterReserve).await;
                        }
                        let now_ms = self.clock.now_ms();
                        let result = within_deadline(
                            deadlines.settle_deadline_ms,
                            now_ms,
                            self.store.record_decision(
                                &record.transfer_id,
                                decision,
                                failure_reason.as_deref(),
                                now_ms,
                            ),
                        )
                        .await;
                        match result {
                            Ok(now_record) => {
                                record = now_record;
                                tracing::info!(
                                    proposed = decision.recorded_state().as_str(),
                                    recorded = record.state.as_str(),
                                    failure_reason = record.failure_reason.as_deref().unwrap_or(""),
                                    "decision recorded"
                                );
                                let effects = machine.handle(Event::DecisionRecorded {
                                    recorded: record.state,
                                    failure_reason: record.failure_reason.clone(),
                                });
                                self.faults.reached(FaultPoint::AfterDecision).await;
                                effects
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "cannot record the decision: stopping");
                                store_error = Some(err);
                                machine.handle(Event::StoreUnavailable)
                            }
                        }
                    }
                    Effect::RecordOutcome(outcome) => {
                        let now_ms = self.clock.now_ms();
                        // Late is harmless here: an unrecorded outcome leaves the
                        // decision, which the reconciler settles again (idempotently).
                        match within_deadline(
                            deadlines.settle_deadline_ms,
                            now_ms,
                            self.store
                                .record_outcome(&record.transfer_id, outcome, now_ms),
                        )
                        .await
                        {
                            Ok(now_record) => {
                                record = now_record;
                                tracing::info!(
                                    recorded = record.state.as_str(),
                                    "outcome recorded"
                                );
                                machine.handle(Event::OutcomeRecorded {
                                    recorded: record.state,
                                })
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "cannot record the outcome: stopping");
                                store_error = Some(err);
                                machine.handle(Event::StoreUnavailable)
                            }
                        }
                    }
                };
                queue.extend(events);
            }

            if machine.is_idle() {
                break;
            }
            if calls.is_empty() {
                // The machine waits only on calls in flight; nothing left means a bug in
                // this shell, and the reconciler is the safe place to leave it.
                tracing::error!(
                    recorded = record.state.as_str(),
                    "driver has nothing to wait for"
                );
                break;
            }
            let deadline_ms = if reserving {
                deadlines.reserve_deadline_ms
            } else {
                deadlines.settle_deadline_ms
            };
            let wait = remaining(deadline_ms, self.clock.now_ms());
            tokio::select! {
                // An answer already in hand beats a deadline passing at the same instant
                // (and a fixed polling order keeps the simulation deterministic).
                biased;
                event = calls.next() => {
                    if matches!(event, Event::ReserveAnswered { .. }) {
                        reserves_answered += 1;
                    }
                    log_event(&event);
                    queue.extend(machine.handle(event));
                }
                () = tokio::time::sleep(wait) => {
                    if reserving {
                        tracing::warn!("reserve deadline passed");
                        queue.extend(machine.handle(Event::ReserveDeadlinePassed));
                    } else {
                        tracing::warn!(
                            recorded = record.state.as_str(),
                            "settle deadline passed: leaving the rest to the reconciler"
                        );
                        break;
                    }
                }
            }
        }
        assert_eq!(
            record.state,
            machine.recorded(),
            "the driver's record and its machine disagree"
        );
        Driven {
            record,
            store_error,
        }
    }

    fn spawn_reserve(
        &self,
        calls: &mut Calls,
        record: &TransferRecord,
        leg: Leg,
        deadlines: Deadlines,
    ) {
        let participants = Arc::clone(&self.participants);
        let terms = ReserveTerms::for_leg(record, leg);
        let timeout = remaining(deadlines.reserve_deadline_ms, self.clock.now_ms());
        calls.spawn(Effect::Reserve(leg), async move {
            let reply =
                match tokio::time::timeout(timeout, participants.reserve(leg, &terms, timeout))
                    .await
                {
                    Ok(reply) => reply,
                    Err(_) => banktransfer_protocol::transfer::ReserveReply::Unknown(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    )),
                };
            Event::ReserveAnswered { leg, reply }
        });
    }

    fn spawn_settle(
        &self,
        calls: &mut Calls,
        record: &TransferRecord,
        effect: Effect,
        leg: Leg,
        deadlines: Deadlines,
    ) {
        let participants = Arc::clone(&self.participants);
        let transfer_id = record.transfer_id.clone();
        let timeout = remaining(deadlines.settle_deadline_ms, self.clock.now_ms());
        let confirm = matches!(effect, Effect::Confirm(_));
        calls.spawn(effect, async move {
            let call = async {
                if confirm {
                    participants.confirm(leg, &transfer_id, timeout).await
                } else {
                    participants.cancel(leg, &transfer_id, timeout).await
                }
            };
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(crate::participants::CallError(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
            };
            match result {
                Ok(()) => Event::Settled { leg },
                Err(err) => {
                    tracing::warn!(leg = leg.name(), confirm, error = %err, "settle failed");
                    Event::SettleFailed { leg }
                }
            }
        });
    }
}

/// Remote calls in flight, each turned into the event the machine expects.
#[derive(Default)]
struct Calls {
    tasks: JoinSet<Event>,
    /// What each task does, so that a task that died still yields its event.
    effects: HashMap<tokio::task::Id, Effect>,
}

impl Calls {
    fn spawn(
        &mut self,
        effect: Effect,
        call: impl std::future::Future<Output = Event> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(call.in_current_span());
        self.effects.insert(handle.id(), effect);
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next answer. Calls still in flight when `Calls` is dropped are aborted: a
    /// reserve that lands after its cancel meets the participant's tombstone.
    async fn next(&mut self) -> Event {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            // Callers check `is_empty` first.
            return std::future::pending().await;
        };
        match joined {
            Ok((id, event)) => {
                self.effects.remove(&id);
                event
            }
            Err(err) => {
                let effect = self
                    .effects
                    .remove(&err.id())
                    .expect("every call task is registered");
                tracing::error!(?effect, error = %err, "participant call task died");
                match effect {
                    Effect::Reserve(leg) => Event::ReserveAnswered {
                        leg,
                        reply: banktransfer_protocol::transfer::ReserveReply::Unknown(
                            "the call failed inside the coordinator".into(),
                        ),
                    },
                    Effect::Confirm(leg) | Effect::Cancel(leg) => Event::SettleFailed { leg },
                    other => unreachable!("{other:?} is not a remote call"),
                }
            }
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::ReserveAnswered { leg, reply } => {
            tracing::info!(leg = leg.name(), ?reply, "reserve answered");
        }
        Event::Settled { leg } => tracing::info!(leg = leg.name(), "settled"),
        Event::SettleFailed { leg } => tracing::warn!(leg = leg.name(), "not settled"),
        other => tracing::debug!(?other, "event"),
    }
}

fn remaining(deadline_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(Budget::remaining_ms(deadline_ms, now_ms))
}
