//! The second seed design (`/work/shared/seeds/003_5c63e297742293cb.txt`): the TLA+
//! transfer with a shared lock, its money movement split into two steps as if alice's and
//! bob's balances lived in different services.
//!
//! ```text
//! variables alice_account = 10, bob_account = 10, locked = 0
//! process Transfer \in 1..2, variable money \in 1..20
//!   Transfer:  await locked = 0; locked := 1;
//!   Move:      if alice_account >= money then
//!   MoveAlice:     alice_account := alice_account - money;
//!   MoveBob:       bob_account := bob_account + money;
//!              end if;
//!   Finish:    locked := 0; assert alice_account + bob_account = account_total;
//! ```
//!
//! Each label is one atomic step. A process may crash between any two of its steps when
//! [`LockModel::crashes`] allows it (at most one crash per run); what a crash does to the
//! lock is [`LockModel::lock_released_on_crash`] (held forever, or released as a lease
//! expiring would).

use stateright::{Model, Property};

use crate::check::Narrate;

pub const ALICE_OPENING: i64 = 10;
pub const BOB_OPENING: i64 = 10;
pub const ACCOUNT_TOTAL: i64 = ALICE_OPENING + BOB_OPENING;
/// `money \in 1..20`.
pub const MONEY_RANGE: std::ops::RangeInclusive<i64> = 1..=20;

pub const STRICT_INVARIANT: &str = "MoneyInvariant: alice + bob == total, in every state";
pub const RELAXED_INVARIANT: &str = "MoneyEventualInvariant: alice + bob <= total, in every state";
pub const INVARIANT_AT_REST: &str = "once no process can move, alice + bob == total";
pub const FINISH_ASSERTION: &str = "the assertion at Finish (alice + bob == total) holds";
pub const NO_OVERDRAFT: &str = "alice's account never goes negative";

#[derive(Clone, Debug)]
pub struct LockModel {
    /// A process may crash between two of its steps (once per run).
    pub crashes: bool,
    /// A crashed process's lock is released (a lease that expires); otherwise it stays
    /// held for ever, as in the seed.
    pub lock_released_on_crash: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    Transfer,
    Move,
    MoveAlice,
    MoveBob,
    Finish,
    Done,
    Crashed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    pub money: i64,
    pub pc: Label,
    /// Holds the lock.
    pub holds_lock: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockState {
    pub alice: i64,
    pub bob: i64,
    pub locked: bool,
    pub processes: [Process; 2],
    pub crashed: bool,
    /// A process reached Finish with alice + bob != total.
    pub finish_assertion_failed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockAction {
    /// Process `i` runs the step at its label.
    Step(usize, Label),
    Crash(usize),
}

impl LockModel {
    fn can_step(state: &LockState, i: usize) -> bool {
        match state.processes[i].pc {
            Label::Transfer => !state.locked,
            Label::Done | Label::Crashed => false,
            _ => true,
        }
    }
}

impl LockState {
    /// No process can take a step: each is done, crashed, or waits on a lock that will
    /// never be released.
    pub fn at_rest(&self) -> bool {
        (0..2).all(|i| !LockModel::can_step(self, i))
    }
}

impl Model for LockModel {
    type State = LockState;
    type Action = LockAction;

    fn init_states(&self) -> Vec<LockState> {
        let mut states = Vec::new();
        for first in MONEY_RANGE {
            for second in MONEY_RANGE {
                let process = |money| Process {
                    money,
                    pc: Label::Transfer,
                    holds_lock: false,
                };
                states.push(LockState {
                    alice: ALICE_OPENING,
                    bob: BOB_OPENING,
                    locked: false,
                    processes: [process(first), process(second)],
                    crashed: false,
                    finish_assertion_failed: false,
                });
            }
        }
        states
    }

    fn actions(&self, state: &LockState, actions: &mut Vec<LockAction>) {
        for i in 0..2 {
            if LockModel::can_step(state, i) {
                actions.push(LockAction::Step(i, state.processes[i].pc));
            }
        }
        if self.crashes && !state.crashed {
            for i in 0..2 {
                if !matches!(state.processes[i].pc, Label::Done | Label::Crashed) {
                    actions.push(LockAction::Crash(i));
                }
            }
        }
    }

    fn next_state(&self, state: &LockState, action: LockAction) -> Option<LockState> {
        let mut next = state.clone();
        match action {
            LockAction::Step(i, label) => {
                let p = next.processes[i];
                assert_eq!(p.pc, label, "a step runs at the process's label");
                let pc = match p.pc {
                    Label::Transfer => {
                        next.locked = true;
                        next.processes[i].holds_lock = true;
                        Label::Move
                    }
                    Label::Move if next.alice >= p.money => Label::MoveAlice,
                    Label::Move => Label::Finish,
                    Label::MoveAlice => {
                        next.alice -= p.money;
                        Label::MoveBob
                    }
                    Label::MoveBob => {
                        next.bob += p.money;
                        Label::Finish
                    }
                    Label::Finish => {
                        next.locked = false;
                        next.processes[i].holds_lock = false;
                        if next.alice + next.bob != ACCOUNT_TOTAL {
                            next.finish_assertion_failed = true;
                        }
                        Label::Done
                    }
                    Label::Done | Label::Crashed => unreachable!("not enabled"),
                };
                next.processes[i].pc = pc;
            }
            LockAction::Crash(i) => {
                next.crashed = true;
                next.processes[i].pc = Label::Crashed;
                if self.lock_released_on_crash && next.processes[i].holds_lock {
                    next.processes[i].holds_lock = false;
                    next.locked = false;
                }
            }
        }
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(STRICT_INVARIANT, |_, s: &LockState| {
                s.alice + s.bob == ACCOUNT_TOTAL
            }),
            Property::always(RELAXED_INVARIANT, |_, s: &LockState| {
                s.alice + s.bob <= ACCOUNT_TOTAL
            }),
            Property::always(INVARIANT_AT_REST, |_, s: &LockState| {
                !s.at_rest() || s.alice + s.bob == ACCOUNT_TOTAL
            }),
            Property::always(FINISH_ASSERTION, |_, s: &LockState| {
                !s.finish_assertion_failed
            }),
            Property::always(NO_OVERDRAFT, |_, s: &LockState| s.alice >= 0),
        ]
    }
}

impl Narrate for LockModel {
    fn describe(&self, action: &LockAction) -> String {
        match action {
            LockAction::Step(i, label) => format!("process {} runs {label:?}", i + 1),
            LockAction::Crash(i) => format!("process {} crashes", i + 1),
        }
    }

    fn summarize(&self, s: &LockState) -> String {
        let process = |p: &Process| {
            format!(
                "{:?}{} (money {})",
                p.pc,
                if p.holds_lock { ", holds lock" } else { "" },
                p.money
            )
        };
        format!(
            "alice {} + bob {} = {} (total {ACCOUNT_TOTAL}) | locked {} | p1 at {} | p2 at {}",
            s.alice,
            s.bob,
            s.alice + s.bob,
            u8::from(s.locked),
            process(&s.processes[0]),
            process(&s.processes[1])
        )
    }
}
