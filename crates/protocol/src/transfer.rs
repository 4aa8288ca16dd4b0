//! The coordinator's state machine for one transfer.
//!
//! The driver (the gateway for a live request, the reconciler for recovery) feeds it
//! [`Event`]s and carries out the [`Effect`]s it returns. The machine is the protocol:
//!
//! 1. The intent is already durable (`Started`) when [`TransferMachine::begin`] is called.
//! 2. Reserve on both legs.
//! 3. Decide: commit when both legs hold; abort on any refusal, any unknown answer, or the
//!    reserve deadline ([`TransferMachine::handle_timeout`]). The decision is an [`Effect::RecordDecision`], a compare-and-set
//!    `Started -> Committed | Aborted`; the driver reports what the record holds afterwards
//!    (which may be a decision someone else recorded first) with [`Event::DecisionRecorded`].
//! 4. Only then confirm (after `Committed`) or cancel (after `Aborted`) both legs.
//! 5. When both legs acknowledged, record the outcome (`Succeeded` / `Failed`).
//!
//! Whatever is not finished (a crash, a participant that does not answer) is picked up by
//! the reconciler through [`TransferMachine::resume`], from the recorded state alone.
//!
//! The machine owns its deadlines (given as [`Deadlines`] when it starts), in the shape of
//! quinn-proto's connection: [`TransferMachine::poll_timeout`] tells the driver when it
//! must next be woken, and [`TransferMachine::handle_timeout`] says what happens then
//! (abort if a reserve is unanswered; stop waiting for confirmations and leave them to
//! the reconciler). The driver only keeps the timer.

use crate::budget::Budget;

/// The two participants of every transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    /// The external institution: the source, where the user's funds are held.
    External,
    /// Our balance store: the destination, where a pending credit is recorded.
    BalanceStore,
}

impl Leg {
    pub const BOTH: [Leg; 2] = [Leg::External, Leg::BalanceStore];

    fn index(self) -> usize {
        match self {
            Leg::External => 0,
            Leg::BalanceStore => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Leg::External => "external institution",
            Leg::BalanceStore => "balance store",
        }
    }
}

/// What the coordinator's store durably holds for a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordedState {
    /// Intent recorded; no decision yet.
    Started,
    /// Decision: commit. Both legs held; both will be confirmed.
    Committed,
    /// Decision: abort. Both legs will be cancelled.
    Aborted,
    /// Both legs confirmed.
    Succeeded,
    /// Both legs cancelled.
    Failed,
}

impl RecordedState {
    pub const ALL: [RecordedState; 5] = [
        RecordedState::Started,
        RecordedState::Committed,
        RecordedState::Aborted,
        RecordedState::Succeeded,
        RecordedState::Failed,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedState::Started => "started",
            RecordedState::Committed => "committed",
            RecordedState::Aborted => "aborted",
            RecordedState::Succeeded => "succeeded",
            RecordedState::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<RecordedState> {
        RecordedState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Decided, whatever the decision.
    pub fn is_decided(self) -> bool {
        self != RecordedState::Started
    }

    /// Both legs acknowledged: nothing left to do.
    pub fn is_final(self) -> bool {
        matches!(self, RecordedState::Succeeded | RecordedState::Failed)
    }

    /// What the client is told. An abort is final for the client as soon as it is
    /// recorded: nothing can move any more, even while the holds are being released.
    pub fn client_status(self) -> ClientStatus {
        match self {
            RecordedState::Started | RecordedState::Committed => ClientStatus::Processing,
            RecordedState::Succeeded => ClientStatus::Succeeded,
            RecordedState::Aborted | RecordedState::Failed => ClientStatus::Failed,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientStatus {
    Processing,
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Commit,
    Abort,
}

impl Decision {
    pub fn recorded_state(self) -> RecordedState {
        match self {
            Decision::Commit => RecordedState::Committed,
            Decision::Abort => RecordedState::Aborted,
        }
    }
}

/// A participant's answer to a reserve, as the coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReserveReply {
    /// The hold is in place (or already confirmed, on a replay).
    Held,
    /// Refused, or cancelled before it arrived: nothing is held. The text says why.
    Refused(String),
    /// Error or timeout: a hold may or may not exist. Only an abort is safe.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    ReserveAnswered {
        leg: Leg,
        reply: ReserveReply,
    },
    /// The compare-and-set ran; this is what the record holds now, with its reason.
    DecisionRecorded {
        recorded: RecordedState,
        failure_reason: Option<String>,
    },
    /// The store could not be reached: the record is unknown. Stop; the reconciler
    /// (or a retry of the request) finds out what it holds.
    StoreUnavailable,
    /// The leg acknowledged the confirm or the cancel.
    Settled {
        leg: Leg,
    },
    /// The leg did not acknowledge in time; the reconciler will retry.
    SettleFailed {
        leg: Leg,
    },
    OutcomeRecorded {
        recorded: RecordedState,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    Reserve(Leg),
    /// Compare-and-set `Started -> decision`, recording `failure_reason` with an abort.
    RecordDecision {
        decision: Decision,
        failure_reason: Option<String>,
    },
    Confirm(Leg),
    Cancel(Leg),
    /// Set the final state once both legs acknowledged.
    RecordOutcome(RecordedState),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Reserving,
    RecordingDecision,
    Settling,
    RecordingOutcome,
    /// Nothing more this driver can do: final, or handed to the reconciler.
    Idle,
}

/// Absolute times (epoch ms) by which each phase must be over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadlines {
    /// Both reserves answered, or the machine aborts.
    pub reserve_deadline_ms: u64,
    /// Confirmations or cancellations answered (and transfer-log writes done), or the
    /// driver stops waiting and leaves them to the reconciler.
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

/// One driver's view of one transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransferMachine {
    phase: Phase,
    deadlines: Deadlines,
    /// The last state this machine knows to be durable.
    recorded: RecordedState,
    failure_reason: Option<String>,
    replies: [Option<ReserveReply>; 2],
    settled: [bool; 2],
    /// Legs whose settle attempt failed in this run.
    settle_failed: [bool; 2],
}

impl TransferMachine {
    /// Start a fresh transfer whose intent is already durable.
    pub fn begin(deadlines: Deadlines) -> (TransferMachine, Vec<Effect>) {
        let machine = TransferMachine {
            phase: Phase::Reserving,
            deadlines,
            recorded: RecordedState::Started,
            failure_reason: None,
            replies: [None, None],
            settled: [false, false],
            settle_failed: [false, false],
        };
        (machine, Leg::BOTH.map(Effect::Reserve).to_vec())
    }

    /// Pick up a transfer from its record alone (reconciler, or a replayed request).
    /// `abort_reason` is given when an undecided transfer must be aborted now (it is
    /// stale: its own driver is gone or out of budget); without it, an undecided
    /// transfer is left to its driver.
    pub fn resume(
        recorded: RecordedState,
        failure_reason: Option<String>,
        abort_reason: Option<String>,
        deadlines: Deadlines,
    ) -> (TransferMachine, Vec<Effect>) {
        let mut machine = TransferMachine {
            phase: Phase::Idle,
            deadlines,
            recorded,
            failure_reason,
            replies: [None, None],
            settled: [false, false],
            settle_failed: [false, false],
        };
        let effects = match (recorded, abort_reason) {
            (RecordedState::Started, Some(reason)) => {
                machine.phase = Phase::RecordingDecision;
                vec![Effect::RecordDecision {
                    decision: Decision::Abort,
                    failure_reason: Some(reason),
                }]
            }
            (RecordedState::Started, None) => Vec::new(),
            (RecordedState::Committed | RecordedState::Aborted, _) => machine.settle_all(),
            (RecordedState::Succeeded | RecordedState::Failed, _) => Vec::new(),
        };
        (machine, effects)
    }

    pub fn recorded(&self) -> RecordedState {
        self.recorded
    }

    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }

    /// True when this driver has nothing left to wait for.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Still waiting for reserves: the reserve deadline is the one that counts.
    pub fn awaits_reserves(&self) -> bool {
        self.phase == Phase::Reserving
    }

    /// Both legs answered their reserve (whatever they said).
    pub fn all_reserves_answered(&self) -> bool {
        self.replies.iter().all(Option::is_some)
    }

    /// When the driver must next call [`TransferMachine::handle_timeout`], if ever: the
    /// reserve deadline until the decision is asked for, then the settle deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Reserving => Some(self.deadlines.reserve_deadline_ms),
            Phase::RecordingDecision | Phase::Settling | Phase::RecordingOutcome => {
                Some(self.deadlines.settle_deadline_ms)
            }
            Phase::Idle => None,
        }
    }

    /// Time has reached `now_ms`. Past the reserve deadline without both answers: abort
    /// (always safe before a commit), naming the silent legs. Past the settle deadline:
    /// stop waiting; the decision is durable and the reconciler finishes it. Before the
    /// deadline (an early wake-up), nothing happens.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Effect> {
        match self.poll_timeout() {
            Some(deadline_ms) if now_ms >= deadline_ms => {}
            _ => return Vec::new(),
        }
        if self.phase != Phase::Reserving {
            self.phase = Phase::Idle;
            return Vec::new();
        }
        let missing: Vec<&str> = Leg::BOTH
            .iter()
            .filter(|leg| self.replies[leg.index()].is_none())
            .map(|leg| leg.name())
            .collect();
        self.record_decision(
            Decision::Abort,
            Some(format!(
                "deadline budget exhausted waiting for the {} to reserve",
                missing.join(" and the ")
            )),
        )
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::ReserveAnswered { leg, reply } => {
                if self.phase != Phase::Reserving {
                    // Late answer after the decision: the decision's confirm or cancel
                    // takes care of whatever this reply says.
                    return Vec::new();
                }
                self.replies[leg.index()] = Some(reply);
                match self.decide() {
                    Some((decision, reason)) => self.record_decision(decision, reason),
                    None => Vec::new(),
                }
            }
            Event::DecisionRecorded {
                recorded,
                failure_reason,
            } => {
                assert!(
                    self.phase == Phase::RecordingDecision,
                    "decision reported while {:?}",
                    self.phase
                );
                assert!(
                    recorded.is_decided(),
                    "a compare-and-set on the decision left the transfer undecided"
                );
                self.recorded = recorded;
                self.failure_reason = failure_reason;
                if recorded.is_final() {
                    // Another driver finished it while we were deciding.
                    self.phase = Phase::Idle;
                    return Vec::new();
                }
                self.settle_all()
            }
            Event::StoreUnavailable => {
                self.phase = Phase::Idle;
                Vec::new()
            }
            Event::Settled { leg } => {
                assert!(
                    self.phase == Phase::Settling,
                    "settlement reported while {:?}",
                    self.phase
                );
                self.settled[leg.index()] = true;
                if self.settled == [true, true] {
                    self.phase = Phase::RecordingOutcome;
                    let outcome = match self.recorded {
                        RecordedState::Committed => RecordedState::Succeeded,
                        RecordedState::Aborted => RecordedState::Failed,
                        other => panic!("legs settled while the record is {other:?}"),
                    };
                    return vec![Effect::RecordOutcome(outcome)];
                }
                self.idle_if_stuck();
                Vec::new()
            }
            Event::SettleFailed { leg } => {
                assert!(self.phase == Phase::Settling);
                self.settle_failed[leg.index()] = true;
                self.idle_if_stuck();
                Vec::new()
            }
            Event::OutcomeRecorded { recorded } => {
                assert!(self.phase == Phase::RecordingOutcome);
                assert!(recorded.is_final());
                self.recorded = recorded;
                self.phase = Phase::Idle;
                Vec::new()
            }
        }
    }

    /// Commit needs both holds; any refusal or unknown answer means abort.
    fn decide(&self) -> Option<(Decision, Option<String>)> {
        for leg in Leg::BOTH {
            match &self.replies[leg.index()] {
                Some(ReserveReply::Refused(why)) => {
                    return Some((
                        Decision::Abort,
                        Some(format!("{} refused: {why}", leg.name())),
                    ));
                }
                Some(ReserveReply::Unknown(why)) => {
                    return Some((
                        Decision::Abort,
                        Some(format!("{} did not answer the reserve: {why}", leg.name())),
                    ));
                }
                _ => {}
            }
        }
        let both_held = self
            .replies
            .iter()
            .all(|reply| reply == &Some(ReserveReply::Held));
        both_held.then_some((Decision::Commit, None))
    }

    fn record_decision(
        &mut self,
        decision: Decision,
        failure_reason: Option<String>,
    ) -> Vec<Effect> {
        self.phase = Phase::RecordingDecision;
        vec![Effect::RecordDecision {
            decision,
            failure_reason,
        }]
    }

    /// Persist-before-send: confirm only once the commit is the recorded state.
    fn settle_all(&mut self) -> Vec<Effect> {
        self.phase = Phase::Settling;
        Leg::BOTH
            .iter()
            .filter(|leg| !self.settled[leg.index()])
            .map(|&leg| match self.recorded {
                RecordedState::Committed => Effect::Confirm(leg),
                RecordedState::Aborted => Effect::Cancel(leg),
                other => panic!("settling a transfer recorded as {other:?}"),
            })
            .collect()
    }

    fn idle_if_stuck(&mut self) {
        let all_answered = Leg::BOTH
            .iter()
            .all(|leg| self.settled[leg.index()] || self.settle_failed[leg.index()]);
        if all_answered && self.settled != [true, true] {
            self.phase = Phase::Idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reserves due by 140, confirmations by 190.
    const DEADLINES: Deadlines = Deadlines {
        reserve_deadline_ms: 140,
        settle_deadline_ms: 190,
    };

    fn begin() -> (TransferMachine, Vec<Effect>) {
        TransferMachine::begin(DEADLINES)
    }

    fn resume(
        recorded: RecordedState,
        abort_reason: Option<String>,
    ) -> (TransferMachine, Vec<Effect>) {
        TransferMachine::resume(recorded, None, abort_reason, DEADLINES)
    }

    fn decided(recorded: RecordedState) -> Event {
        Event::DecisionRecorded {
            recorded,
            failure_reason: None,
        }
    }

    #[test]
    fn happy_path_confirms_only_after_the_commit_is_recorded() {
        let (mut m, effects) = begin();
        assert_eq!(
            effects,
            vec![
                Effect::Reserve(Leg::External),
                Effect::Reserve(Leg::BalanceStore)
            ]
        );
        assert!(
            m.handle(Event::ReserveAnswered {
                leg: Leg::BalanceStore,
                reply: ReserveReply::Held
            })
            .is_empty()
        );
        let effects = m.handle(Event::ReserveAnswered {
            leg: Leg::External,
            reply: ReserveReply::Held,
        });
        assert_eq!(
            effects,
            vec![Effect::RecordDecision {
                decision: Decision::Commit,
                failure_reason: None
            }]
        );
        let effects = m.handle(decided(RecordedState::Committed));
        assert_eq!(
            effects,
            vec![
                Effect::Confirm(Leg::External),
                Effect::Confirm(Leg::BalanceStore)
            ]
        );
        assert!(m.handle(Event::Settled { leg: Leg::External }).is_empty());
        let effects = m.handle(Event::Settled {
            leg: Leg::BalanceStore,
        });
        assert_eq!(
            effects,
            vec![Effect::RecordOutcome(RecordedState::Succeeded)]
        );
        m.handle(Event::OutcomeRecorded {
            recorded: RecordedState::Succeeded,
        });
        assert!(m.is_idle());
        assert_eq!(m.recorded().client_status(), ClientStatus::Succeeded);
    }

    #[test]
    fn a_refusal_aborts_and_cancels_both_legs() {
        let (mut m, _) = begin();
        let effects = m.handle(Event::ReserveAnswered {
            leg: Leg::BalanceStore,
            reply: ReserveReply::Refused("antifraud".into()),
        });
        assert_eq!(
            effects,
            vec![Effect::RecordDecision {
                decision: Decision::Abort,
                failure_reason: Some("balance store refused: antifraud".into())
            }]
        );
        // The external hold that arrives later changes nothing.
        assert!(
            m.handle(Event::ReserveAnswered {
                leg: Leg::External,
                reply: ReserveReply::Held
            })
            .is_empty()
        );
        let effects = m.handle(decided(RecordedState::Aborted));
        assert_eq!(
            effects,
            vec![
                Effect::Cancel(Leg::External),
                Effect::Cancel(Leg::BalanceStore)
            ]
        );
        assert_eq!(m.recorded().client_status(), ClientStatus::Failed);
    }

    #[test]
    fn an_unknown_answer_aborts() {
        let (mut m, _) = begin();
        m.handle(Event::ReserveAnswered {
            leg: Leg::BalanceStore,
            reply: ReserveReply::Held,
        });
        let effects = m.handle(Event::ReserveAnswered {
            leg: Leg::External,
            reply: ReserveReply::Unknown("deadline exceeded".into()),
        });
        assert!(matches!(
            effects.as_slice(),
            [Effect::RecordDecision {
                decision: Decision::Abort,
                ..
            }]
        ));
    }

    #[test]
    fn the_deadline_aborts_and_names_the_silent_leg() {
        let (mut m, _) = begin();
        m.handle(Event::ReserveAnswered {
            leg: Leg::BalanceStore,
            reply: ReserveReply::Held,
        });
        assert_eq!(m.poll_timeout(), Some(140));
        assert!(
            m.handle_timeout(139).is_empty(),
            "woken early: nothing happens"
        );
        let effects = m.handle_timeout(140);
        assert_eq!(
            effects,
            vec![Effect::RecordDecision {
                decision: Decision::Abort,
                failure_reason: Some(
                    "deadline budget exhausted waiting for the external institution to reserve"
                        .into()
                )
            }]
        );
    }

    #[test]
    fn after_the_decision_the_settle_deadline_counts_and_hands_over() {
        let (mut m, _) = begin();
        for leg in Leg::BOTH {
            assert!(!m.all_reserves_answered());
            m.handle(Event::ReserveAnswered {
                leg,
                reply: ReserveReply::Held,
            });
        }
        assert!(m.all_reserves_answered());
        assert!(!m.awaits_reserves());
        assert_eq!(m.poll_timeout(), Some(190));
        // The reserve deadline no longer matters once the decision is asked for.
        assert!(m.handle_timeout(150).is_empty());
        m.handle(decided(RecordedState::Committed));
        m.handle(Event::Settled { leg: Leg::External });
        assert_eq!(m.poll_timeout(), Some(190));
        assert!(m.handle_timeout(190).is_empty(), "no new effect: just stop");
        assert!(m.is_idle());
        assert_eq!(m.poll_timeout(), None);
        // Left to the reconciler: the commit is durable, the outcome is not recorded.
        assert_eq!(m.recorded(), RecordedState::Committed);
    }

    #[test]
    fn a_resumed_machine_waits_only_for_its_settle_deadline() {
        let (m, _) = resume(RecordedState::Started, None);
        assert!(m.is_idle());
        assert_eq!(m.poll_timeout(), None);
        let (mut m, _) = resume(RecordedState::Aborted, None);
        assert!(!m.awaits_reserves());
        assert_eq!(m.poll_timeout(), Some(190));
        assert!(m.handle_timeout(10_000).is_empty());
        assert!(m.is_idle());
        assert!(
            Deadlines::recovery(1_000, 500)
                == Deadlines {
                    reserve_deadline_ms: 1_500,
                    settle_deadline_ms: 1_500
                }
        );
    }

    #[test]
    fn losing_the_race_follows_the_recorded_decision() {
        let (mut m, _) = begin();
        m.handle(Event::ReserveAnswered {
            leg: Leg::External,
            reply: ReserveReply::Held,
        });
        m.handle(Event::ReserveAnswered {
            leg: Leg::BalanceStore,
            reply: ReserveReply::Held,
        });
        // The reconciler aborted first: the compare-and-set reports its decision.
        let effects = m.handle(Event::DecisionRecorded {
            recorded: RecordedState::Aborted,
            failure_reason: Some("stale".into()),
        });
        assert_eq!(
            effects,
            vec![
                Effect::Cancel(Leg::External),
                Effect::Cancel(Leg::BalanceStore)
            ]
        );
        assert_eq!(m.failure_reason(), Some("stale"));
    }

    #[test]
    fn a_failed_settle_hands_over_without_recording_an_outcome() {
        let (mut m, _) = resume(RecordedState::Committed, None);
        assert!(
            m.handle(Event::Settled {
                leg: Leg::BalanceStore
            })
            .is_empty()
        );
        assert!(
            m.handle(Event::SettleFailed { leg: Leg::External })
                .is_empty()
        );
        assert!(m.is_idle());
        assert_eq!(m.recorded(), RecordedState::Committed);
        assert_eq!(m.recorded().client_status(), ClientStatus::Processing);
    }

    #[test]
    fn resume_derives_everything_from_the_record() {
        let (_, e) = resume(RecordedState::Started, None);
        assert!(
            e.is_empty(),
            "a live undecided transfer belongs to its driver"
        );
        let (_, e) = resume(RecordedState::Started, Some("stale".into()));
        assert_eq!(
            e,
            vec![Effect::RecordDecision {
                decision: Decision::Abort,
                failure_reason: Some("stale".into())
            }]
        );
        let (_, e) = resume(RecordedState::Aborted, None);
        assert_eq!(
            e,
            vec![
                Effect::Cancel(Leg::External),
                Effect::Cancel(Leg::BalanceStore)
            ]
        );
        let (_, e) = resume(RecordedState::Succeeded, Some("x".into()));
        assert!(e.is_empty());
    }

    #[test]
    fn recorded_state_names_round_trip() {
        for s in RecordedState::ALL {
            assert_eq!(RecordedState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RecordedState::parse("committing"), None);
    }
}
