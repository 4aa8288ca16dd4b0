//! The async shell around [`TransferMachine`]: carries out its effects (remote calls
//! concurrently, each with a deadline; store writes in order) and feeds it what came of
//! them, until the machine is idle. Every decision is the machine's, deadlines included:
//! the shell sleeps until [`TransferMachine::poll_timeout`] and then calls
//! [`TransferMachine::handle_timeout`]; this module only does I/O and keeps the timer.
//!
//! The gateway drives a fresh transfer with [`Driver::begin_answering`] inside the
//! client's budget: it answers once both legs have confirmed, and the outcome's write
//! finishes after the answer ([`Driver::finish`]; readers meanwhile find the legs'
//! confirms, [`Driver::as_read`]). [`Driver::begin`] runs the same drive to its end;
//! the reconciler (and a replayed request taking over) picks one up with
//! [`Driver::resume`]. Callers open the `transfer` span (with its id) around a drive, so
//! every line the driver logs carries the transfer id once. Each protocol step opens its
//! own span under it (`reserve`, `decision`, `confirm` or `cancel`, `outcome`): exported
//! as traces ([`service_kit::traces`]), they show where a transfer spent its time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use banktransfer_protocol::audit::{self, ReadOutcome};
use banktransfer_protocol::budget::Budget;
use banktransfer_protocol::transfer::ReserveReply;
use banktransfer_protocol::transfer::{
    Decision, Effect, Event, Leg, RecordedState, TransferMachine,
};
use service_kit::clock::SharedClock;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::participants::{CallError, Participants, ReserveTerms};
use crate::pause::{PausePoint, PausePoints};
use crate::store::{StoreError, TransferRecord, TransferStore, within_deadline};

/// The machine's deadlines; re-exported so callers need not name the protocol crate.
pub use banktransfer_protocol::transfer::Deadlines;

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
    pauses: PausePoints,
}

impl<S, P> Clone for Driver<S, P> {
    fn clone(&self) -> Self {
        Driver {
            store: Arc::clone(&self.store),
            participants: Arc::clone(&self.participants),
            clock: Arc::clone(&self.clock),
            pauses: self.pauses,
        }
    }
}

impl<S: TransferStore, P: Participants> Driver<S, P> {
    pub fn new(
        store: Arc<S>,
        participants: Arc<P>,
        clock: SharedClock,
        pauses: PausePoints,
    ) -> Driver<S, P> {
        Driver {
            store,
            participants,
            clock,
            pauses,
        }
    }

    /// Drives a transfer whose intent was just recorded (`started`).
    pub async fn begin(&self, record: TransferRecord, deadlines: Deadlines) -> Driven {
        let answered = self.start(record, deadlines, Until::Idle).await;
        assert!(answered.rest.is_none(), "a drive to the end leaves nothing");
        answered.driven
    }

    /// [`Driver::begin`] that returns as soon as the client's answer is final: once both
    /// legs have confirmed, the outcome is certain, and the client need not wait for the
    /// write that records it. The write is left in [`Answered::rest`], which the caller
    /// runs to the end ([`Driver::finish`]); if it never does (a crash), the transfer stays
    /// `committed` and the reconciler records the outcome, as after any crash there.
    pub async fn begin_answering(&self, record: TransferRecord, deadlines: Deadlines) -> Answered {
        self.start(record, deadlines, Until::Answered).await
    }

    async fn start(&self, record: TransferRecord, deadlines: Deadlines, until: Until) -> Answered {
        assert_eq!(
            record.state,
            RecordedState::Started,
            "begin needs a fresh intent"
        );
        tracing::info!(amount = %record.amount, "reserving on both legs");
        let (machine, effects) = TransferMachine::begin(deadlines);
        self.drive(Drive::new(machine, record), effects, until)
            .await
    }

    /// `record` as a reader is told it (`banktransfer_protocol::audit::read_outcome`): a
    /// `committed` transfer whose two legs both show their confirm is `succeeded`, since
    /// its client may have been told so before the outcome's write landed
    /// ([`Driver::begin_answering`]). A leg that cannot be read within `timeout` is an
    /// error when the other shows its confirm, rather than PROCESSING: the client may
    /// already know the transfer SUCCEEDED, and must not read it going back.
    pub async fn as_read(
        &self,
        record: TransferRecord,
        timeout: Duration,
    ) -> Result<TransferRecord, CallError> {
        if record.state != RecordedState::Committed {
            return Ok(record);
        }
        let read = |leg: Leg| {
            let call = self
                .participants
                .get_reservation(leg, &record.transfer_id, timeout);
            async move {
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(view)) => Ok(view),
                    Ok(Err(err)) => Err(CallError(format!("{}: {err}", leg.name()))),
                    Err(_) => Err(CallError(format!(
                        "{}: no answer within {} ms",
                        leg.name(),
                        timeout.as_millis()
                    ))),
                }
            }
        };
        let (external, balance_store) = tokio::join!(read(Leg::External), read(Leg::BalanceStore));
        let views = [
            external.as_ref().ok().copied(),
            balance_store.as_ref().ok().copied(),
        ];
        match audit::read_outcome(record.state, views) {
            ReadOutcome::AsRecorded => Ok(record),
            ReadOutcome::Outcome(outcome) => Ok(record.with_outcome(outcome)),
            ReadOutcome::Unknown => Err(external
                .and(balance_store)
                .err()
                .unwrap_or_else(|| CallError("a leg could not be read".into()))),
        }
    }

    /// What [`Driver::begin_answering`] left: the outcome's write, to its end.
    pub async fn finish(&self, rest: Rest) -> Driven {
        self.run(rest.drive, rest.effects).await
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
        let (machine, effects) = TransferMachine::resume(
            record.state,
            record.failure_reason.clone(),
            abort_reason,
            deadlines,
        );
        self.run(Drive::new(machine, record), effects).await
    }

    /// Effects, then a wait for whatever comes first (an answer or the machine's next
    /// deadline), until the machine is idle.
    async fn run(&self, drive: Drive, effects: Vec<Effect>) -> Driven {
        let answered = self.drive(drive, effects, Until::Idle).await;
        assert!(answered.rest.is_none(), "a drive to the end leaves nothing");
        answered.driven
    }

    async fn drive(&self, mut drive: Drive, mut effects: Vec<Effect>, until: Until) -> Answered {
        loop {
            if let Carried::Answered(rest) = self.carry_out(&mut drive, effects, until).await {
                // The write records the time of this answer, so that the row the client
                // reads later is the row it was answered with.
                let answered_at_ms = self.clock.now_ms().max(drive.record.updated_at_ms);
                drive.outcome_at_ms = Some(answered_at_ms);
                let mut answer = drive.record.clone().with_outcome(RecordedState::Succeeded);
                answer.updated_at_ms = answered_at_ms;
                return Answered {
                    driven: Driven {
                        record: answer,
                        store_error: None,
                    },
                    rest: Some(Rest {
                        drive,
                        effects: rest,
                    }),
                };
            }
            if drive.machine.is_idle() {
                break;
            }
            if drive.calls.is_empty() {
                // The machine waits only on calls in flight; nothing left means a bug in
                // this shell, and the reconciler is the safe place to leave it.
                tracing::error!(
                    recorded = drive.record.state.as_str(),
                    "driver has nothing to wait for"
                );
                break;
            }
            effects = self.wait(&mut drive).await;
        }
        assert_eq!(
            drive.record.state,
            drive.machine.recorded(),
            "the driver's record and its machine disagree"
        );
        Answered {
            driven: Driven {
                record: drive.record,
                store_error: drive.store_error,
            },
            rest: None,
        }
    }

    /// Remote calls go out at once; transfer-log writes run inline, in order, and what
    /// they report goes straight back into the machine. With [`Until::Answered`], stops
    /// before recording a success: what is left is returned.
    async fn carry_out(&self, drive: &mut Drive, effects: Vec<Effect>, until: Until) -> Carried {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if until == Until::Answered && effect == Effect::RecordOutcome(RecordedState::Succeeded)
            {
                queue.push_front(effect);
                return Carried::Answered(queue.into());
            }
            let events = match effect {
                Effect::Reserve(leg) => {
                    self.spawn_reserve(drive, leg);
                    continue;
                }
                Effect::Confirm(leg) | Effect::Cancel(leg) => {
                    self.spawn_settle(drive, effect.clone(), leg);
                    continue;
                }
                Effect::RecordDecision {
                    decision,
                    failure_reason,
                } => self.record_decision(drive, decision, failure_reason).await,
                Effect::RecordOutcome(outcome) => self.record_outcome(drive, outcome).await,
            };
            queue.extend(events);
        }
        Carried::All
    }

    async fn record_decision(
        &self,
        drive: &mut Drive,
        decision: Decision,
        failure_reason: Option<String>,
    ) -> Vec<Effect> {
        if drive.machine.all_reserves_answered() {
            self.pauses.reached(PausePoint::AfterReserve).await;
        }
        let now_ms = self.clock.now_ms();
        let write = self.store.record_decision(
            &drive.record.transfer_id,
            decision,
            failure_reason.as_deref(),
            now_ms,
        );
        let deadline_ms = drive.machine.deadlines().settle_deadline_ms;
        let span = tracing::info_span!("decision", proposed = decision.recorded_state().as_str());
        match within_deadline(deadline_ms, now_ms, write)
            .instrument(span)
            .await
        {
            Ok(now_record) => {
                drive.record = now_record;
                let record = &drive.record;
                // A commit as proposed is the common case, and the outcome line follows;
                // an abort, or someone else's decision, is worth a line of its own.
                if record.state == RecordedState::Committed
                    && decision.recorded_state() == RecordedState::Committed
                {
                    tracing::debug!(recorded = record.state.as_str(), "decision recorded");
                } else {
                    tracing::info!(
                        proposed = decision.recorded_state().as_str(),
                        recorded = record.state.as_str(),
                        failure_reason = record.failure_reason.as_deref().unwrap_or(""),
                        "decision recorded"
                    );
                }
                let effects = drive.machine.handle(Event::DecisionRecorded {
                    recorded: record.state,
                    failure_reason: record.failure_reason.clone(),
                });
                self.pauses.reached(PausePoint::AfterDecision).await;
                effects
            }
            Err(err) => {
                tracing::warn!(error = ?err, "cannot record the decision: stopping");
                drive.stop(err)
            }
        }
    }

    /// Late is harmless here: an unrecorded outcome leaves the decision, which the
    /// reconciler settles again (idempotently).
    async fn record_outcome(&self, drive: &mut Drive, outcome: RecordedState) -> Vec<Effect> {
        let now_ms = self.clock.now_ms();
        let write = self.store.record_outcome(
            &drive.record.transfer_id,
            outcome,
            drive.outcome_at_ms.unwrap_or(now_ms),
        );
        let deadline_ms = drive.machine.deadlines().settle_deadline_ms;
        let span = tracing::info_span!("outcome", outcome = outcome.as_str());
        match within_deadline(deadline_ms, now_ms, write)
            .instrument(span)
            .await
        {
            Ok(now_record) => {
                drive.record = now_record;
                tracing::info!(recorded = drive.record.state.as_str(), "outcome recorded");
                drive.machine.handle(Event::OutcomeRecorded {
                    recorded: drive.record.state,
                })
            }
            Err(err) => {
                tracing::warn!(error = ?err, "cannot record the outcome: stopping");
                drive.stop(err)
            }
        }
    }

    /// The next answer, or the machine's next deadline, whichever comes first.
    async fn wait(&self, drive: &mut Drive) -> Vec<Effect> {
        let Some(wake_ms) = drive.machine.poll_timeout() else {
            return Vec::new();
        };
        let sleep = remaining(wake_ms, self.clock.now_ms());
        tokio::select! {
            // An answer already in hand beats a deadline passing at the same instant
            // (and a fixed polling order keeps the simulation deterministic).
            biased;
            event = drive.calls.next() => {
                log_event(&event);
                drive.machine.handle(event)
            }
            () = tokio::time::sleep(sleep) => self.timeout(drive, wake_ms),
        }
    }

    fn timeout(&self, drive: &mut Drive, wake_ms: u64) -> Vec<Effect> {
        if drive.machine.awaits_reserves() {
            tracing::warn!("reserve deadline passed");
        } else {
            tracing::warn!(
                recorded = drive.record.state.as_str(),
                "settle deadline passed: leaving the rest to the reconciler"
            );
        }
        // The timer fired for `wake_ms`, so at least that time has passed, whatever a
        // test's hand-moved clock says.
        let now_ms = self.clock.now_ms().max(wake_ms);
        drive.machine.handle_timeout(now_ms)
    }

    fn spawn_reserve(&self, drive: &mut Drive, leg: Leg) {
        let participants = Arc::clone(&self.participants);
        let terms = ReserveTerms::for_leg(&drive.record, leg);
        let deadline_ms = drive.machine.deadlines().reserve_deadline_ms;
        let timeout = remaining(deadline_ms, self.clock.now_ms());
        let span = tracing::info_span!("reserve", leg = leg.name());
        let call = async move {
            let reply =
                match tokio::time::timeout(timeout, participants.reserve(leg, &terms, timeout))
                    .await
                {
                    Ok(reply) => reply,
                    Err(_) => ReserveReply::Unknown(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    )),
                };
            Event::ReserveAnswered { leg, reply }
        };
        drive
            .calls
            .spawn(Effect::Reserve(leg), call.instrument(span));
    }

    fn spawn_settle(&self, drive: &mut Drive, effect: Effect, leg: Leg) {
        let participants = Arc::clone(&self.participants);
        let transfer_id = drive.record.transfer_id.clone();
        let deadline_ms = drive.machine.deadlines().settle_deadline_ms;
        let timeout = remaining(deadline_ms, self.clock.now_ms());
        let confirm = matches!(effect, Effect::Confirm(_));
        let span = if confirm {
            tracing::info_span!("confirm", leg = leg.name())
        } else {
            tracing::info_span!("cancel", leg = leg.name())
        };
        let call = async move {
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
                    tracing::warn!(leg = leg.name(), confirm, error = ?err, "settle failed");
                    Event::SettleFailed { leg }
                }
            }
        };
        drive.calls.spawn(effect, call.instrument(span));
    }
}

/// What [`Driver::begin_answering`] achieved.
pub struct Answered {
    /// What to answer. With a `rest`, the record is the row as its outcome's write will
    /// leave it (`succeeded`): both legs have confirmed, so nothing else can happen.
    pub driven: Driven,
    /// The outcome's write, still to do ([`Driver::finish`]).
    pub rest: Option<Rest>,
}

/// A drive stopped before its last write: the machine, and the effects it still owes.
pub struct Rest {
    drive: Drive,
    effects: Vec<Effect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// The machine is idle: final, or left to the reconciler.
    Idle,
    /// The client's answer is known to be final.
    Answered,
}

enum Carried {
    /// Every effect was carried out.
    All,
    /// Stopped with these effects left, the outcome's write first.
    Answered(Vec<Effect>),
}

/// One drive in progress: the machine, the row as this driver last saw it, the calls in
/// flight, and the store failure that stopped it, if one did.
struct Drive {
    machine: TransferMachine,
    record: TransferRecord,
    calls: Calls,
    store_error: Option<StoreError>,
    /// When the client was answered with the outcome, before its write.
    outcome_at_ms: Option<u64>,
}

impl Drive {
    fn new(machine: TransferMachine, record: TransferRecord) -> Drive {
        Drive {
            machine,
            record,
            calls: Calls::default(),
            store_error: None,
            outcome_at_ms: None,
        }
    }

    /// The transfer log could not be written: the machine stops.
    fn stop(&mut self, err: StoreError) -> Vec<Effect> {
        self.store_error = Some(err);
        self.machine.handle(Event::StoreUnavailable)
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
                tracing::error!(?effect, error = ?err, "participant call task died");
                match effect {
                    Effect::Reserve(leg) => Event::ReserveAnswered {
                        leg,
                        reply: ReserveReply::Unknown(
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

/// The steps of a transfer that went as planned are logged at DEBUG (their timings are in
/// the trace's spans): at INFO a transfer writes two lines, its intent and its outcome,
/// plus one per refusal, unknown answer or abort. Each line is a write to the log: seven
/// per transfer cost the gateway 4-12 % of its processor time (docs/PERFORMANCE.md).
fn log_event(event: &Event) {
    match event {
        Event::ReserveAnswered {
            leg,
            reply: reply @ ReserveReply::Held,
        } => tracing::debug!(leg = leg.name(), ?reply, "reserve answered"),
        Event::ReserveAnswered { leg, reply } => {
            tracing::info!(leg = leg.name(), ?reply, "reserve answered");
        }
        Event::Settled { leg } => tracing::debug!(leg = leg.name(), "settled"),
        Event::SettleFailed { leg } => tracing::warn!(leg = leg.name(), "not settled"),
        other => tracing::debug!(?other, "event"),
    }
}

fn remaining(deadline_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(Budget::remaining_ms(deadline_ms, now_ms))
}
