//! The production protocol, model-checked: one coordinator (gateway + reconciler over one
//! durable transfer log), two participants, a faulty network, two concurrent transfers on
//! the same pair of accounts with funds for only one.
//!
//! See [`world`] for the state and transitions, [`participant`] for the participants'
//! request handling, [`properties`] for what is checked.

pub mod participant;
pub mod properties;
pub mod world;

use banktransfer_protocol::reconcile::Takeover;
use banktransfer_protocol::reservation::ReservationStatus;
use banktransfer_protocol::transfer::Leg;
use stateright::{Model, Property};

use crate::check::Narrate;
pub use properties::FinishingMemo;
use properties::*;
pub use world::{Action, Request, Role, World};
use world::{leg_short, reconciler_takeover};

/// Concurrent transfers, each of [`AMOUNT_MINOR`], on the same two accounts.
pub const TRANSFERS: usize = 2;
pub const AMOUNT_MINOR: i64 = 1;
/// The user's account at the external institution covers exactly one transfer.
pub const EXTERNAL_OPENING_MINOR: i64 = AMOUNT_MINOR;
/// Her account in our balance store starts empty.
pub const INTERNAL_OPENING_MINOR: i64 = 0;

const _: () = assert!(TRANSFERS == 2, "the model's properties name two transfers");
const _: () = assert!(AMOUNT_MINOR > 0);
const _: () = assert!(
    EXTERNAL_OPENING_MINOR >= AMOUNT_MINOR
        && EXTERNAL_OPENING_MINOR < AMOUNT_MINOR * TRANSFERS as i64,
    "funds must cover exactly one of the concurrent transfers"
);

/// How many faults of each kind one run may suffer (shared by both transfers).
///
/// Timeouts are not faults here: a driver stops waiting for a call whenever no answer
/// can come any more (its request or its answer was lost), which ends every wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Messages the network drops: a request before any participant sees it, or an
    /// answer after the participant acted.
    pub losses_max: u8,
    /// Requests the network delivers twice (the copy may arrive at any later moment).
    pub duplicates_max: u8,
    /// Crashes of the gateway or of the reconciler (each loses that process's drivers).
    pub crashes_max: u8,
    /// Takeovers of a transfer whose gateway driver is still alive: the reconciler
    /// judges it stale (a paused gateway, a skewed clock) and aborts it, or finishes
    /// its decision alongside the gateway. In production the reconciler looks at a
    /// transfer only once its request's budget is spent, so this is a fault too; once
    /// the gateway's driver is gone, takeovers are unbounded.
    pub premature_takeovers_max: u8,
}

impl Bounds {
    /// No faults at all: only the races between the two transfers.
    pub const NONE: Bounds = Bounds {
        losses_max: 0,
        duplicates_max: 0,
        crashes_max: 0,
        premature_takeovers_max: 0,
    };
    /// One fault of every kind in the same run.
    pub const ONE_OF_EACH: Bounds = Bounds {
        losses_max: 1,
        duplicates_max: 1,
        crashes_max: 1,
        premature_takeovers_max: 1,
    };
    /// Upper limit on any bound, to keep a run finite and short.
    pub const LIMIT: u8 = 2;

    fn assert_valid(&self) {
        assert!(
            [
                self.losses_max,
                self.duplicates_max,
                self.crashes_max,
                self.premature_takeovers_max
            ]
            .iter()
            .all(|&b| b <= Bounds::LIMIT),
            "bounds above {}: {self:?}",
            Bounds::LIMIT
        );
    }
}

/// Removes one safety mechanism, to show that the checks catch its absence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The production protocol.
    #[default]
    None,
    /// A cancel for an unknown transfer records nothing (the tombstone the pure code
    /// returns is dropped), so a late reserve hangs a hold.
    NoTombstone,
    /// The decision write overwrites whatever is recorded instead of compare-and-set
    /// `started -> decision`.
    NoDecisionCas,
    /// The driver sends Confirm as soon as the machine asks to record a commit, and
    /// persists the commit in a later step.
    SendBeforePersist,
    /// A replayed confirm on a confirmed reservation is applied again.
    NonIdempotentConfirm,
}

#[derive(Clone, Debug)]
pub struct ProtocolModel {
    pub bounds: Bounds,
    pub mutation: Mutation,
    /// The transfer whose first reserve the balance store's antifraud screening may
    /// refuse (a nondeterministic choice at delivery).
    pub antifraud_transfer: Option<u8>,
    /// Drivers give up on any call at any moment, also on one whose request is still in
    /// flight (which then arrives late). By default a driver times out only a call no
    /// answer can come for: a late request is what premature takeovers and crashes
    /// produce, at a fraction of the states.
    pub impatient: bool,
    /// Memo of the liveness check (see [`properties::finishes_once_faults_stop`]).
    pub(crate) finishing: FinishingMemo,
}

impl ProtocolModel {
    pub fn new(bounds: Bounds, mutation: Mutation) -> ProtocolModel {
        ProtocolModel {
            bounds,
            mutation,
            antifraud_transfer: Some(0),
            impatient: false,
            finishing: FinishingMemo::default(),
        }
    }

    /// The longest fault-free schedule the liveness check needed from any state it was
    /// asked about so far.
    pub fn longest_fault_free_schedule(&self) -> usize {
        self.finishing.longest()
    }

    /// Screening runs on a reserve with nothing recorded yet.
    fn may_refuse(&self, world: &World, request: &Request) -> bool {
        request.leg == Leg::BalanceStore
            && request.op == world::Op::Reserve
            && self.antifraud_transfer == Some(request.transfer)
            && world.book(Leg::BalanceStore).reservations[usize::from(request.transfer)].is_none()
    }
}

impl Model for ProtocolModel {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        self.bounds.assert_valid();
        if let Some(t) = self.antifraud_transfer {
            assert!(usize::from(t) < TRANSFERS, "no transfer {t}");
        }
        vec![World::initial(self)]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        if world.broken.is_some() {
            return;
        }
        let faults = world.faults;
        let may_lose = faults.losses < self.bounds.losses_max;
        let may_copy = faults.duplicates < self.bounds.duplicates_max;
        for request in &world.network {
            let refusals: &[bool] = if self.may_refuse(world, request) {
                &[false, true]
            } else {
                &[false]
            };
            for keep_copy in [false, true] {
                for reply_lost in [false, true] {
                    if keep_copy && !may_copy || reply_lost && !may_lose {
                        continue;
                    }
                    for &antifraud_refuses in refusals {
                        actions.push(Action::Deliver {
                            request: *request,
                            keep_copy,
                            reply_lost,
                            antifraud_refuses,
                        });
                    }
                }
            }
            if may_lose {
                actions.push(Action::Lose(*request));
            }
        }
        for role in Role::BOTH {
            for transfer in 0..TRANSFERS as u8 {
                let Some(driver) = world.driver(role, transfer) else {
                    continue;
                };
                if driver.deferred_write.is_some() {
                    actions.push(Action::WriteDeferred { role, transfer });
                    continue;
                }
                let mut silent = false;
                for &call in &driver.calls {
                    if self.impatient || world.unanswerable(role, transfer, call) {
                        silent = true;
                        actions.push(Action::TimeOut {
                            role,
                            transfer,
                            call,
                        });
                    }
                }
                // The machine's reserve deadline passes (when it matters: a reserve is
                // unanswered). Its settle deadline is each confirm's or cancel's own
                // deadline in `driver.rs`, which `TimeOut` models call by call.
                if role == Role::Gateway && driver.machine.awaits_reserves() && silent {
                    actions.push(Action::ReserveDeadlinePassed { transfer });
                }
            }
        }
        let may_take_over_early = faults.premature_takeovers < self.bounds.premature_takeovers_max;
        for transfer in 0..TRANSFERS as u8 {
            if world.driver(Role::Reconciler, transfer).is_some() {
                continue;
            }
            let gateway_gone = world.driver(Role::Gateway, transfer).is_none();
            let takeover = reconciler_takeover(world.record(transfer));
            if matches!(takeover, Takeover::Abort | Takeover::Finish)
                && (gateway_gone || may_take_over_early)
            {
                actions.push(Action::Takeover { transfer, takeover });
            }
        }
        if faults.crashes < self.bounds.crashes_max {
            for role in Role::BOTH {
                if world.drivers[role.ix()].iter().any(Option::is_some) {
                    actions.push(Action::Crash {
                        role,
                        unsent_lost: false,
                    });
                    if world.network.iter().any(|r| r.from == role) {
                        actions.push(Action::Crash {
                            role,
                            unsent_lost: true,
                        });
                    }
                }
            }
        }
    }

    fn next_state(&self, world: &World, action: Action) -> Option<World> {
        let mut next = world.clone();
        next.apply(self, &action);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(LEGS_AGREE, legs_agree),
            Property::always(NO_NEGATIVE_BALANCE, no_negative_balance),
            Property::always(EXTERNAL_CONSERVED, external_conserved),
            Property::always(INTERNAL_MATCHES_CREDITS, internal_matches_credits),
            Property::always(CONFIRMED_ONLY_AFTER_COMMIT, confirmed_only_after_commit),
            Property::always(BOOKS_AGREE_AT_REST, books_agree_at_rest),
            Property::always(NOTHING_HELD_AT_REST, nothing_held_at_rest),
            Property::always(CODE_RUNS_CLEAN, code_runs_clean),
            Property::always(FINISHES_ONCE_FAULTS_STOP, finishes_once_faults_stop),
            Property::sometimes(SOME_TRANSFER_SUCCEEDS, some_transfer_succeeds),
            Property::sometimes(SOME_TRANSFER_FAILS, some_transfer_fails),
            Property::sometimes(ONE_SUCCEEDS_ONE_FAILS, one_succeeds_one_fails),
        ]
    }
}

fn status_short(status: Option<&ReservationStatus>, tombstone: bool) -> &'static str {
    match status {
        None => "-",
        Some(ReservationStatus::Held) => "held",
        Some(ReservationStatus::Confirmed) => "confirmed",
        Some(ReservationStatus::Cancelled) if tombstone => "tombstone",
        Some(ReservationStatus::Cancelled) => "cancelled",
        Some(ReservationStatus::Refused(_)) => "refused",
    }
}

impl Narrate for ProtocolModel {
    fn describe(&self, action: &Action) -> String {
        match action {
            Action::Deliver {
                request,
                keep_copy,
                reply_lost,
                antifraud_refuses,
            } => {
                let mut text = format!("deliver {request}");
                if *antifraud_refuses {
                    text.push_str(" [antifraud refuses it]");
                }
                if *keep_copy {
                    text.push_str(" [duplicate: a copy stays in flight]");
                }
                if *reply_lost {
                    text.push_str(" [its answer is lost]");
                }
                text
            }
            Action::Lose(request) => format!("network loses {request}"),
            Action::TimeOut {
                role,
                transfer,
                call,
            } => format!(
                "{role} times out its {:?} call to {} for T{transfer}",
                call.op,
                leg_short(call.leg)
            ),
            Action::ReserveDeadlinePassed { transfer } => {
                format!("gateway's reserve deadline for T{transfer} passes")
            }
            Action::WriteDeferred { role, transfer } => {
                format!("{role} finally records its commit for T{transfer} (compare-and-set)")
            }
            Action::Takeover { transfer, takeover } => match takeover {
                Takeover::Abort => format!("reconciler takes over T{transfer}: stale, abort"),
                _ => format!("reconciler takes over T{transfer}: finish the decision"),
            },
            Action::Crash { role, unsent_lost } => format!(
                "the {role} crashes (its drivers are lost{})",
                if *unsent_lost {
                    ", and the requests it had not sent yet"
                } else {
                    ""
                }
            ),
        }
    }

    fn epilogue(&self, property: &'static str, world: &World) -> Option<String> {
        if property != FINISHES_ONCE_FAULTS_STOP {
            return None;
        }
        const SHOWN: usize = 12;
        let run = fault_free_run(self, world, SHOWN);
        let mut text =
            "     From here, with no more faults, the schedule the liveness check runs goes:\n"
                .to_owned();
        for (i, (action, next)) in run.iter().enumerate() {
            text.push_str(&format!(
                " +{:>2}. {} => {}\n",
                i + 1,
                self.describe(action),
                self.summarize(next)
            ));
        }
        // A fresh memo, so that the answer names what happens rather than the memo.
        let fresh = ProtocolModel {
            finishing: FinishingMemo::default(),
            ..self.clone()
        };
        match finish_without_faults(&fresh, world) {
            Ok(steps) => text.push_str(&format!("     ... and finishes after {steps} steps.\n")),
            Err(why) => text.push_str(&format!("     ... and never finishes: it {why}.\n")),
        }
        Some(text)
    }

    fn summarize(&self, world: &World) -> String {
        let balance = |leg: Leg| {
            let b = world.book(leg).balance;
            format!(
                "{} {}/{}/{}",
                leg_short(leg),
                b.available_minor,
                b.reserved_minor,
                b.confirmed_minor
            )
        };
        // Balances read available/reserved/confirmed.
        let mut text = format!("{} {}", balance(Leg::External), balance(Leg::BalanceStore));
        for t in 0..TRANSFERS {
            let leg = |leg: Leg| {
                let r = world.book(leg).reservations[t].as_ref();
                status_short(r.map(|r| &r.status), r.is_some_and(|r| r.terms.is_none()))
            };
            let record = world.records[t].state;
            let drivers: Vec<&str> = Role::BOTH
                .iter()
                .filter(|&&role| world.driver(role, t as u8).is_some())
                .map(|role| match role {
                    Role::Gateway => "gw",
                    Role::Reconciler => "rc",
                })
                .collect();
            text.push_str(&format!(
                " | T{t} {} ext:{} int:{}{}",
                record.as_str(),
                leg(Leg::External),
                leg(Leg::BalanceStore),
                if drivers.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", drivers.join(","))
                }
            ));
        }
        text.push_str(&format!(" | in flight: {}", world.network.len()));
        if let Some(why) = &world.broken {
            text.push_str(&format!(" | BROKEN: {why}"));
        }
        text
    }
}
