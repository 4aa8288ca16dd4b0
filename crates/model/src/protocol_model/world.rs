//! The protocol model's state (the world) and its transitions.
//!
//! Everything that decides is production code: the drivers feed
//! [`TransferMachine`] and carry out its [`Effect`]s the way
//! `coordinator/src/driver.rs` does, the participants run
//! [`crate::protocol_model::participant::handle`] (the pure reservation book), and the
//! reconciler asks [`reconcile::takeover`]; what a passing deadline does is the machine's
//! own `handle_timeout`. What is modelled here is only the plumbing: the network, the
//! transfer log's compare-and-set, when time passes, and crashes.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use banktransfer_protocol::budget::{Budget, BudgetPolicy};
use banktransfer_protocol::reconcile::{self, AbortedBy, Takeover};
use banktransfer_protocol::reservation::{Balance, Reservation};
use banktransfer_protocol::transfer::{
    Deadlines, Decision, Effect, Event, Leg, RecordedState, ReserveReply, TransferMachine,
};

use super::participant;
use super::{Mutation, ProtocolModel, TRANSFERS};
use crate::production;

/// The two processes that drive transfers. Both are volatile: a crash loses their drivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The gateway: drives each transfer from `TransferMachine::begin`.
    Gateway,
    /// The reconciler: picks transfers up with `TransferMachine::resume`.
    Reconciler,
}

impl Role {
    pub const BOTH: [Role; 2] = [Role::Gateway, Role::Reconciler];

    pub fn ix(self) -> usize {
        match self {
            Role::Gateway => 0,
            Role::Reconciler => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Gateway => "gateway",
            Role::Reconciler => "reconciler",
        })
    }
}

pub fn leg_ix(leg: Leg) -> usize {
    match leg {
        Leg::External => 0,
        Leg::BalanceStore => 1,
    }
}

pub fn leg_short(leg: Leg) -> &'static str {
    match leg {
        Leg::External => "ext",
        Leg::BalanceStore => "int",
    }
}

/// A call from a driver to a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Reserve,
    Confirm,
    Cancel,
}

/// A participant's answer on the wire. Reserve answers are what
/// `coordinator/src/participants/grpc.rs` turns a reply into ([`ReserveReply`]);
/// a confirm or cancel counts only when the reservation ends as asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    Held,
    Refused(String),
    Unknown(String),
    /// Confirm: the reservation is CONFIRMED. Cancel: it is CANCELLED or REFUSED.
    Settled(bool),
}

/// A request in flight from a driver to a participant.
///
/// A call is one step: the participant handles the request and its answer reaches the
/// caller in the same step, or is lost ([`Action::Deliver`]'s `reply_lost`). Nothing is
/// lost by not delaying answers separately: an answer changes only its caller's driver,
/// and that driver reaches the world only through compare-and-set writes and new
/// requests, which can still interleave with every other step afterwards; an answer
/// that would arrive after its caller stopped waiting is a lost answer. An answer that
/// reaches a caller no longer waiting for it (timed out, crashed) is dropped, as gRPC
/// drops the answer to an abandoned call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    pub from: Role,
    pub transfer: u8,
    pub leg: Leg,
    pub op: Op,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: {:?} T{}",
            self.from,
            leg_short(self.leg),
            self.op,
            self.transfer
        )
    }
}

/// A call a driver waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub leg: Leg,
    pub op: Op,
}

/// One driver (the async shell of `driver.rs`) around one production [`TransferMachine`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Driver {
    /// Owns its deadlines too: the model asks it whether one is pending and what
    /// happens when it passes, as `driver.rs` does.
    pub machine: TransferMachine,
    /// A commit the [`Mutation::SendBeforePersist`] mutant has not written yet. The real
    /// driver runs each transfer-log write inline (nothing reaches the machine
    /// meanwhile), which the model does within the step that asked for it: a crash or
    /// another driver's write between the machine's asking and the write is the same as
    /// one just before that step, since nobody else saw the machine ask.
    pub deferred_write: Option<Effect>,
    /// Calls in flight (each ends with its answer or its timeout).
    pub calls: BTreeSet<Call>,
}

impl Driver {
    fn new(machine: TransferMachine) -> Driver {
        Driver {
            machine,
            deferred_write: None,
            calls: BTreeSet::new(),
        }
    }
}

/// The coordinator's durable transfer log row (the part the protocol reads).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub state: RecordedState,
    pub failure_reason: Option<String>,
}

/// A participant's durable book: one account and one reservation slot per transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Book {
    pub balance: Balance,
    pub reservations: [Option<Reservation>; TRANSFERS],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultsUsed {
    pub losses: u8,
    pub duplicates: u8,
    pub crashes: u8,
    pub premature_takeovers: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    /// Durable: survives crashes.
    pub records: [Record; TRANSFERS],
    /// Volatile, by [`Role::ix`] then transfer.
    pub drivers: [[Option<Driver>; TRANSFERS]; 2],
    /// Durable, by [`leg_ix`].
    pub books: [Book; 2],
    /// Requests in flight: a set, so re-sending a request already in flight adds nothing
    /// (a second copy is what [`Action::Deliver`] with `keep_copy` models).
    pub network: BTreeSet<Request>,
    pub faults: FaultsUsed,
    /// Production code panicked (an assertion fired) or a driver was left with nothing
    /// to wait for: the world stops here and a property reports it.
    pub broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The participant handles the request. `keep_copy`: a duplicate, the original stays
    /// in flight. `reply_lost`: the participant acted but its answer is lost.
    /// `antifraud_refuses`: the balance store's screening refuses this (first) reserve.
    Deliver {
        request: Request,
        keep_copy: bool,
        reply_lost: bool,
        antifraud_refuses: bool,
    },
    /// The request is lost before any participant sees it.
    Lose(Request),
    /// A driver stops waiting for a call: `Unknown` for a reserve, `SettleFailed` for a
    /// confirm or cancel.
    TimeOut {
        role: Role,
        transfer: u8,
        call: Call,
    },
    /// The gateway's reserve deadline passes: its machine's `handle_timeout` at its
    /// `poll_timeout`.
    ReserveDeadlinePassed { transfer: u8 },
    /// The mutant's deferred transfer-log write runs.
    WriteDeferred { role: Role, transfer: u8 },
    /// The reconciler claims the transfer and resumes it from its record. Time is
    /// abstract, so an undecided transfer may be judged stale at any moment.
    Takeover { transfer: u8, takeover: Takeover },
    /// The process loses its drivers. `unsent_lost`: the requests it had in flight never
    /// left it.
    Crash { role: Role, unsent_lost: bool },
}

/// An undecided transfer's creation time; the reconciler always judges it at the moment
/// it turns stale (the worst case), through the production rule.
const CREATED_AT_MS: u64 = 1_000;

/// The gateway's deadlines for a transfer created at [`CREATED_AT_MS`]: the default
/// budget's. Abstract time never reaches them by itself: the model decides when the
/// reserve deadline passes ([`Action::ReserveDeadlinePassed`]).
fn gateway_deadlines() -> Deadlines {
    Deadlines::from_budget(&Budget::new(BudgetPolicy::DEFAULT, CREATED_AT_MS, None))
}

/// The reconciler's deadlines: a call timeout from the moment it takes over. Its settle
/// deadline, like the gateway's, is the deadline of each confirm or cancel it sends,
/// which [`Action::TimeOut`] already models call by call.
fn reconciler_deadlines() -> Deadlines {
    let stale_at_ms = reconcile::stale_at_ms(CREATED_AT_MS, &BudgetPolicy::DEFAULT);
    Deadlines::recovery(stale_at_ms, RECONCILER_CALL_TIMEOUT_MS)
}

/// The reconciler's default `call_timeout_ms`.
const RECONCILER_CALL_TIMEOUT_MS: u64 = 1_000;

/// What the reconciler's pass would do with this record now.
pub fn reconciler_takeover(record: &Record) -> Takeover {
    let budget = BudgetPolicy::DEFAULT;
    reconcile::takeover(
        record.state,
        CREATED_AT_MS,
        reconcile::stale_at_ms(CREATED_AT_MS, &budget),
        &budget,
    )
}

impl World {
    pub fn initial(model: &ProtocolModel) -> World {
        let book = |opening_minor| Book {
            balance: Balance::opening(opening_minor),
            reservations: [None, None],
        };
        let mut world = World {
            // Both intents are durable before anyone is called.
            records: std::array::from_fn(|_| Record {
                state: RecordedState::Started,
                failure_reason: None,
            }),
            drivers: Default::default(),
            books: [
                book(super::EXTERNAL_OPENING_MINOR),
                book(super::INTERNAL_OPENING_MINOR),
            ],
            network: BTreeSet::new(),
            faults: FaultsUsed::default(),
            broken: None,
        };
        for t in 0..TRANSFERS as u8 {
            let (machine, effects) = TransferMachine::begin(gateway_deadlines());
            world.drivers[Role::Gateway.ix()][usize::from(t)] = Some(Driver::new(machine));
            world.carry_out(model, Role::Gateway, t, effects);
        }
        world
    }

    pub fn driver(&self, role: Role, transfer: u8) -> Option<&Driver> {
        self.drivers[role.ix()][usize::from(transfer)].as_ref()
    }

    fn driver_mut(&mut self, role: Role, transfer: u8) -> Option<&mut Driver> {
        self.drivers[role.ix()][usize::from(transfer)].as_mut()
    }

    /// No answer can come for this call any more: its request is no longer in flight
    /// (lost, or handled with its answer lost).
    pub fn unanswerable(&self, role: Role, transfer: u8, call: Call) -> bool {
        !self.network.contains(&Request {
            from: role,
            transfer,
            leg: call.leg,
            op: call.op,
        })
    }

    pub fn record(&self, transfer: u8) -> &Record {
        &self.records[usize::from(transfer)]
    }

    pub fn book(&self, leg: Leg) -> &Book {
        &self.books[leg_ix(leg)]
    }

    pub fn apply(&mut self, model: &ProtocolModel, action: &Action) {
        match action {
            Action::Deliver {
                request,
                keep_copy,
                reply_lost,
                antifraud_refuses,
            } => {
                if *keep_copy {
                    self.faults.duplicates += 1;
                } else {
                    self.network.remove(request);
                }
                if *reply_lost {
                    self.faults.losses += 1;
                }
                self.deliver(model, *request, !*reply_lost, *antifraud_refuses);
            }
            Action::Lose(request) => {
                self.faults.losses += 1;
                self.network.remove(request);
            }
            Action::TimeOut {
                role,
                transfer,
                call,
            } => {
                let driver = self
                    .driver_mut(*role, *transfer)
                    .expect("only a live driver times out");
                assert!(driver.calls.remove(call), "timed out a call not in flight");
                let event = match call.op {
                    // `driver.rs`: a reserve without an answer in time is Unknown.
                    Op::Reserve => Event::ReserveAnswered {
                        leg: call.leg,
                        reply: ReserveReply::Unknown("no answer within the deadline".into()),
                    },
                    Op::Confirm | Op::Cancel => Event::SettleFailed { leg: call.leg },
                };
                self.feed(model, *role, *transfer, event);
            }
            Action::ReserveDeadlinePassed { transfer } => {
                self.pass_deadline(model, Role::Gateway, *transfer);
            }
            Action::WriteDeferred { role, transfer } => {
                let write = self
                    .driver_mut(*role, *transfer)
                    .and_then(|d| d.deferred_write.take())
                    .expect("a deferred write is pending");
                self.carry_out(model, *role, *transfer, vec![write]);
            }
            Action::Takeover { transfer, takeover } => {
                if self.driver(Role::Gateway, *transfer).is_some() {
                    self.faults.premature_takeovers += 1;
                }
                let record = self.record(*transfer).clone();
                let abort_reason = match takeover {
                    Takeover::Abort => Some(reconcile::stale_abort_reason(
                        &BudgetPolicy::DEFAULT,
                        AbortedBy::Reconciler,
                    )),
                    Takeover::Finish => None,
                    Takeover::Wait | Takeover::Done => unreachable!("not a takeover"),
                };
                let resumed = production::run(|| {
                    TransferMachine::resume(
                        record.state,
                        record.failure_reason,
                        abort_reason,
                        reconciler_deadlines(),
                    )
                });
                match resumed {
                    Ok((machine, effects)) => {
                        self.drivers[Role::Reconciler.ix()][usize::from(*transfer)] =
                            Some(Driver::new(machine));
                        self.carry_out(model, Role::Reconciler, *transfer, effects);
                    }
                    Err(why) => self.broken = Some(format!("resume panicked: {why}")),
                }
            }
            Action::Crash { role, unsent_lost } => {
                self.faults.crashes += 1;
                self.drivers[role.ix()] = Default::default();
                if *unsent_lost {
                    self.network.retain(|r| r.from != *role);
                }
            }
        }
        self.drop_spent_drivers();
    }

    /// A driver that has learned the decision of a transfer whose record is now final
    /// can do nothing that matters any more: it sends no new request (the machine sends
    /// its confirms or cancels once, when it learns the decision) and its outcome write
    /// is a guarded no-op. The model drops it at once, which keeps the state space small;
    /// its requests already in flight stay in flight. A driver still deciding is kept: its
    /// decision write must meet the compare-and-set.
    fn drop_spent_drivers(&mut self) {
        for t in 0..TRANSFERS {
            if !self.records[t].state.is_final() {
                continue;
            }
            for role in Role::BOTH {
                let slot = &mut self.drivers[role.ix()][t];
                if slot.as_ref().is_some_and(|d| {
                    d.machine.recorded().is_decided() && d.deferred_write.is_none()
                }) {
                    *slot = None;
                }
            }
        }
    }

    /// The participant handles the request (atomically, as its one database transaction
    /// does); its answer reaches the caller unless lost.
    fn deliver(
        &mut self,
        model: &ProtocolModel,
        request: Request,
        answered: bool,
        antifraud_refuses: bool,
    ) {
        let Request {
            from,
            transfer,
            leg,
            op,
        } = request;
        let book = &mut self.books[leg_ix(leg)];
        let handled = production::run(|| {
            participant::handle(model.mutation, book, leg, transfer, op, antifraud_refuses)
        });
        let answer = match handled {
            Ok(answer) => answer,
            Err(why) => {
                self.broken = Some(format!(
                    "the {} panicked handling {op:?} T{transfer}: {why}",
                    leg.name()
                ));
                return;
            }
        };
        if !answered {
            return;
        }
        let Some(driver) = self.driver_mut(from, transfer) else {
            return;
        };
        // Only the mutant defers a write, and it has no call in flight meanwhile.
        if driver.deferred_write.is_some() || !driver.calls.remove(&Call { leg, op }) {
            return;
        }
        let event = match (op, answer) {
            (Op::Reserve, Answer::Held) => Event::ReserveAnswered {
                leg,
                reply: ReserveReply::Held,
            },
            (Op::Reserve, Answer::Refused(why)) => Event::ReserveAnswered {
                leg,
                reply: ReserveReply::Refused(why),
            },
            (Op::Reserve, Answer::Unknown(why)) => Event::ReserveAnswered {
                leg,
                reply: ReserveReply::Unknown(why),
            },
            (Op::Confirm | Op::Cancel, Answer::Settled(true)) => Event::Settled { leg },
            (Op::Confirm | Op::Cancel, Answer::Settled(false)) => Event::SettleFailed { leg },
            (op, answer) => unreachable!("{op:?} answered with {answer:?}"),
        };
        self.feed(model, from, transfer, event);
    }

    /// The transfer log, as `coordinator/src/store/sql.rs` writes it: the
    /// decision is a compare-and-set `started -> decision`, after which the driver is told
    /// what the row holds (maybe someone else's decision); the outcome is guarded by the
    /// decision it follows.
    fn write_store(&mut self, model: &ProtocolModel, transfer: u8, write: &Effect) -> Event {
        let record = &mut self.records[usize::from(transfer)];
        match write {
            Effect::RecordDecision {
                decision,
                failure_reason,
            } => {
                let compare_and_set = model.mutation != Mutation::NoDecisionCas;
                if !compare_and_set || record.state == RecordedState::Started {
                    record.state = decision.recorded_state();
                    record.failure_reason = failure_reason.clone();
                }
                Event::DecisionRecorded {
                    recorded: record.state,
                    failure_reason: record.failure_reason.clone(),
                }
            }
            Effect::RecordOutcome(outcome) => {
                let expected = match outcome {
                    RecordedState::Succeeded => RecordedState::Committed,
                    RecordedState::Failed => RecordedState::Aborted,
                    other => unreachable!("{other:?} is not an outcome"),
                };
                if record.state == expected {
                    record.state = *outcome;
                }
                if record.state == *outcome {
                    Event::OutcomeRecorded { recorded: *outcome }
                } else {
                    // The store reports a corrupt row; the driver stops.
                    Event::StoreUnavailable
                }
            }
            other => unreachable!("{other:?} is not a store write"),
        }
    }

    /// Hands an event to a driver's machine and carries out what it asks for.
    fn feed(&mut self, model: &ProtocolModel, role: Role, transfer: u8, event: Event) {
        self.step_machine(model, role, transfer, |machine| machine.handle(event));
    }

    /// The machine's pending deadline passes: `driver.rs` wakes at `poll_timeout` and
    /// calls `handle_timeout`.
    fn pass_deadline(&mut self, model: &ProtocolModel, role: Role, transfer: u8) {
        self.step_machine(model, role, transfer, |machine| {
            let deadline_ms = machine.poll_timeout().expect("a deadline is pending");
            machine.handle_timeout(deadline_ms)
        });
    }

    fn step_machine(
        &mut self,
        model: &ProtocolModel,
        role: Role,
        transfer: u8,
        step: impl FnOnce(&mut TransferMachine) -> Vec<Effect>,
    ) {
        let driver = self
            .driver_mut(role, transfer)
            .expect("fed a driver that exists");
        match production::run(|| step(&mut driver.machine)) {
            Ok(effects) => self.carry_out(model, role, transfer, effects),
            Err(why) => {
                self.broken = Some(format!(
                    "the {role}'s TransferMachine for T{transfer} panicked: {why}"
                ));
            }
        }
    }

    /// `driver.rs`'s effect loop: a call goes out at once and is registered as in
    /// flight; a transfer-log write runs inline and its result goes straight back into
    /// the machine. A machine that is idle, or that has nothing left to wait for, ends
    /// its driver.
    fn carry_out(&mut self, model: &ProtocolModel, role: Role, transfer: u8, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let driver = self.drivers[role.ix()][usize::from(transfer)]
                .as_mut()
                .expect("a live driver");
            let op = match &effect {
                Effect::Reserve(_) => Op::Reserve,
                Effect::Confirm(_) => Op::Confirm,
                Effect::Cancel(_) => Op::Cancel,
                Effect::RecordDecision { .. } | Effect::RecordOutcome(_) => {
                    if let Effect::RecordDecision { decision, .. } = &effect
                        && model.mutation == Mutation::SendBeforePersist
                        && *decision == Decision::Commit
                        && driver.deferred_write.is_none()
                    {
                        // The mutant: confirm as soon as the commit is asked for, and
                        // write it in a later step.
                        for leg in Leg::BOTH {
                            self.network.insert(Request {
                                from: role,
                                transfer,
                                leg,
                                op: Op::Confirm,
                            });
                        }
                        driver.deferred_write = Some(effect);
                        return;
                    }
                    let event = self.write_store(model, transfer, &effect);
                    let driver = self.drivers[role.ix()][usize::from(transfer)]
                        .as_mut()
                        .expect("a live driver");
                    match production::run(|| driver.machine.handle(event)) {
                        Ok(effects) => queue.extend(effects),
                        Err(why) => {
                            self.broken = Some(format!(
                                "the {role}'s TransferMachine for T{transfer} panicked: {why}"
                            ));
                            return;
                        }
                    }
                    continue;
                }
            };
            let leg = match effect {
                Effect::Reserve(leg) | Effect::Confirm(leg) | Effect::Cancel(leg) => leg,
                _ => unreachable!(),
            };
            driver.calls.insert(Call { leg, op });
            self.network.insert(Request {
                from: role,
                transfer,
                leg,
                op,
            });
        }
        let slot = &mut self.drivers[role.ix()][usize::from(transfer)];
        let driver = slot.as_ref().expect("a live driver");
        if driver.machine.is_idle() {
            *slot = None;
        } else if driver.calls.is_empty() {
            // `driver.rs` logs this as a bug in its shell and leaves the transfer to the
            // reconciler.
            self.broken = Some(format!(
                "the {role}'s driver for T{transfer} has nothing to wait for"
            ));
            *slot = None;
        }
    }
}
