//! The first seed design (`/work/shared/seeds/000_ba59e574704b39f0.txt`), modelled to show
//! how it loses and creates money.
//!
//! The gateway calls the external institution's `StartTransfer`, which moves the money
//! out of the user's external account at once; on success it calls our balance store's
//! `UpdateUserBalance`, which credits her. On an error from the balance store (a refusal,
//! or no answer) it enqueues a reversal on a durable queue, and a background worker calls
//! `UndoStartTransfer`, which puts the money back at the external institution. Nothing
//! else is durable: a gateway that crashes forgets what it was doing.
//!
//! Money is counted in minor units: `external + internal == TOTAL` when nothing is in
//! transit. Which faults can happen is a [`NaiveFaults`] switch, so that each
//! counterexample shows the fault it needs.

use std::collections::BTreeSet;

use stateright::{Model, Property};

use crate::check::Narrate;

pub const AMOUNT_MINOR: i64 = 1;
pub const EXTERNAL_OPENING_MINOR: i64 = AMOUNT_MINOR;
pub const INTERNAL_OPENING_MINOR: i64 = 0;
pub const TOTAL_MINOR: i64 = EXTERNAL_OPENING_MINOR + INTERNAL_OPENING_MINOR;

pub const NO_MONEY_CREATED: &str = "money is never created (external + internal <= total)";
pub const NO_MONEY_LOST_AT_REST: &str =
    "at rest, no money is lost (external + internal == total once nothing is in transit)";
pub const SOMETIMES_SUCCEEDS: &str = "the client is told SUCCESS";

/// The faults a run may suffer; each at most once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NaiveFaults {
    /// The gateway process dies at any point of its handler.
    pub gateway_crash: bool,
    /// The balance store's answer is lost after it applied the update (the gateway sees
    /// an error or a timeout).
    pub internal_reply_lost: bool,
    /// The external institution's answer is lost after it moved the money.
    pub external_reply_lost: bool,
    /// The balance store refuses the update (antifraud, limits): an error the design
    /// handles with its reversal.
    pub internal_refuses: bool,
}

impl NaiveFaults {
    pub const ALL: NaiveFaults = NaiveFaults {
        gateway_crash: true,
        internal_reply_lost: true,
        external_reply_lost: true,
        internal_refuses: true,
    };
}

#[derive(Clone, Debug)]
pub struct NaiveModel {
    pub faults: NaiveFaults,
}

/// Where the gateway's handler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gateway {
    /// `StartTransfer` sent, waiting for its answer.
    AwaitingExternal,
    /// `UpdateUserBalance` sent, waiting for its answer.
    AwaitingInternal,
    /// The balance store failed: the reversal is about to be enqueued.
    EnqueueingReversal,
    /// The client got its answer.
    Answered {
        success: bool,
    },
    Crashed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    StartTransfer,
    StartTransferAnswer { ok: bool },
    UpdateUserBalance,
    UpdateUserBalanceAnswer { ok: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NaiveState {
    pub external_minor: i64,
    pub internal_minor: i64,
    pub gateway: Gateway,
    pub network: BTreeSet<Message>,
    /// Durable queue of reversals the background worker has yet to run.
    pub reversals_queued: u8,
    pub faults_used: NaiveFaults,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NaiveAction {
    /// The external institution moves the money out and answers OK.
    ExternalHandlesStartTransfer,
    /// The balance store credits the user and answers OK, or refuses and answers FAILED.
    InternalHandlesUpdate {
        refuses: bool,
    },
    /// An answer reaches the gateway (or nobody, if it crashed).
    GatewayReceives(Message),
    /// An answer is lost.
    Lose(Message),
    /// The gateway stops waiting: no answer can come any more.
    GatewayTimesOut,
    GatewayEnqueuesReversal,
    /// The background worker calls `UndoStartTransfer`; the money goes back.
    WorkerUndoesStartTransfer,
    GatewayCrashes,
}

impl NaiveState {
    /// Nothing is in transit and nothing will run any more.
    pub fn at_rest(&self) -> bool {
        matches!(self.gateway, Gateway::Answered { .. } | Gateway::Crashed)
            && self.network.is_empty()
            && self.reversals_queued == 0
    }

    fn total_minor(&self) -> i64 {
        self.external_minor + self.internal_minor
    }
}

impl Model for NaiveModel {
    type State = NaiveState;
    type Action = NaiveAction;

    fn init_states(&self) -> Vec<NaiveState> {
        vec![NaiveState {
            external_minor: EXTERNAL_OPENING_MINOR,
            internal_minor: INTERNAL_OPENING_MINOR,
            gateway: Gateway::AwaitingExternal,
            network: BTreeSet::from([Message::StartTransfer]),
            reversals_queued: 0,
            faults_used: NaiveFaults::default(),
        }]
    }

    fn actions(&self, state: &NaiveState, actions: &mut Vec<NaiveAction>) {
        let used = state.faults_used;
        for &message in &state.network {
            match message {
                Message::StartTransfer => actions.push(NaiveAction::ExternalHandlesStartTransfer),
                Message::UpdateUserBalance => {
                    actions.push(NaiveAction::InternalHandlesUpdate { refuses: false });
                    if self.faults.internal_refuses && !used.internal_refuses {
                        actions.push(NaiveAction::InternalHandlesUpdate { refuses: true });
                    }
                }
                Message::StartTransferAnswer { .. } => {
                    actions.push(NaiveAction::GatewayReceives(message));
                    if self.faults.external_reply_lost && !used.external_reply_lost {
                        actions.push(NaiveAction::Lose(message));
                    }
                }
                Message::UpdateUserBalanceAnswer { .. } => {
                    actions.push(NaiveAction::GatewayReceives(message));
                    if self.faults.internal_reply_lost && !used.internal_reply_lost {
                        actions.push(NaiveAction::Lose(message));
                    }
                }
            }
        }
        let waiting = matches!(
            state.gateway,
            Gateway::AwaitingExternal | Gateway::AwaitingInternal
        );
        if waiting && state.network.is_empty() {
            actions.push(NaiveAction::GatewayTimesOut);
        }
        if state.gateway == Gateway::EnqueueingReversal {
            actions.push(NaiveAction::GatewayEnqueuesReversal);
        }
        if state.reversals_queued > 0 {
            actions.push(NaiveAction::WorkerUndoesStartTransfer);
        }
        let alive = !matches!(state.gateway, Gateway::Answered { .. } | Gateway::Crashed);
        if alive && self.faults.gateway_crash && !used.gateway_crash {
            actions.push(NaiveAction::GatewayCrashes);
        }
    }

    fn next_state(&self, state: &NaiveState, action: NaiveAction) -> Option<NaiveState> {
        let mut next = state.clone();
        match action {
            NaiveAction::ExternalHandlesStartTransfer => {
                next.network.remove(&Message::StartTransfer);
                let ok = next.external_minor >= AMOUNT_MINOR;
                if ok {
                    next.external_minor -= AMOUNT_MINOR;
                }
                next.network.insert(Message::StartTransferAnswer { ok });
            }
            NaiveAction::InternalHandlesUpdate { refuses } => {
                next.network.remove(&Message::UpdateUserBalance);
                if refuses {
                    next.faults_used.internal_refuses = true;
                } else {
                    next.internal_minor += AMOUNT_MINOR;
                }
                next.network
                    .insert(Message::UpdateUserBalanceAnswer { ok: !refuses });
            }
            NaiveAction::GatewayReceives(message) => {
                next.network.remove(&message);
                next.gateway = match (state.gateway, message) {
                    (Gateway::AwaitingExternal, Message::StartTransferAnswer { ok: true }) => {
                        next.network.insert(Message::UpdateUserBalance);
                        Gateway::AwaitingInternal
                    }
                    // The external leg failed: nothing to undo, the client is told so.
                    (Gateway::AwaitingExternal, Message::StartTransferAnswer { ok: false }) => {
                        Gateway::Answered { success: false }
                    }
                    (Gateway::AwaitingInternal, Message::UpdateUserBalanceAnswer { ok: true }) => {
                        Gateway::Answered { success: true }
                    }
                    (Gateway::AwaitingInternal, Message::UpdateUserBalanceAnswer { ok: false }) => {
                        Gateway::EnqueueingReversal
                    }
                    // Nobody waits for it any more.
                    (gateway, _) => gateway,
                };
            }
            NaiveAction::Lose(message) => {
                next.network.remove(&message);
                match message {
                    Message::StartTransferAnswer { .. } => {
                        next.faults_used.external_reply_lost = true;
                    }
                    _ => next.faults_used.internal_reply_lost = true,
                }
            }
            NaiveAction::GatewayTimesOut => {
                next.gateway = match state.gateway {
                    // "If the call to either service borks ... fail gracefully": the
                    // reversal is for the balance store's failures.
                    Gateway::AwaitingExternal => Gateway::Answered { success: false },
                    Gateway::AwaitingInternal => Gateway::EnqueueingReversal,
                    other => unreachable!("timed out while {other:?}"),
                };
            }
            NaiveAction::GatewayEnqueuesReversal => {
                next.reversals_queued += 1;
                next.gateway = Gateway::Answered { success: false };
            }
            NaiveAction::WorkerUndoesStartTransfer => {
                next.reversals_queued -= 1;
                next.external_minor += AMOUNT_MINOR;
            }
            NaiveAction::GatewayCrashes => {
                next.faults_used.gateway_crash = true;
                next.gateway = Gateway::Crashed;
            }
        }
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(NO_MONEY_CREATED, |_, s: &NaiveState| {
                s.total_minor() <= TOTAL_MINOR
            }),
            Property::always(NO_MONEY_LOST_AT_REST, |_, s: &NaiveState| {
                !s.at_rest() || s.total_minor() >= TOTAL_MINOR
            }),
            Property::sometimes(SOMETIMES_SUCCEEDS, |_, s: &NaiveState| {
                s.gateway == Gateway::Answered { success: true }
            }),
        ]
    }
}

impl Narrate for NaiveModel {
    fn describe(&self, action: &NaiveAction) -> String {
        match action {
            NaiveAction::ExternalHandlesStartTransfer => {
                "external institution handles StartTransfer (money leaves the external account)"
                    .into()
            }
            NaiveAction::InternalHandlesUpdate { refuses: false } => {
                "balance store handles UpdateUserBalance (credits the user)".into()
            }
            NaiveAction::InternalHandlesUpdate { refuses: true } => {
                "balance store refuses UpdateUserBalance (antifraud)".into()
            }
            NaiveAction::GatewayReceives(message) => {
                format!("{message:?} reaches the gateway")
            }
            NaiveAction::Lose(message) => format!("network loses {message:?}"),
            NaiveAction::GatewayTimesOut => "gateway times out waiting for an answer".into(),
            NaiveAction::GatewayEnqueuesReversal => "gateway enqueues the reversal".into(),
            NaiveAction::WorkerUndoesStartTransfer => {
                "background worker runs UndoStartTransfer (money back to the external account)"
                    .into()
            }
            NaiveAction::GatewayCrashes => "the gateway crashes".into(),
        }
    }

    fn summarize(&self, s: &NaiveState) -> String {
        format!(
            "external {} + internal {} = {} (total {TOTAL_MINOR}) | gateway {:?} | in flight {:?} | reversals queued {}",
            s.external_minor,
            s.internal_minor,
            s.total_minor(),
            s.gateway,
            s.network,
            s.reversals_queued
        )
    }
}
