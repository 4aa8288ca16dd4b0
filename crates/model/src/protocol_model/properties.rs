//! What must hold in every reachable world, and what must be possible.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use banktransfer_protocol::audit::{self, Broken, Mismatch, ReservationView};
use banktransfer_protocol::reconcile::Takeover;
use banktransfer_protocol::reservation::ReservationStatus;
use banktransfer_protocol::transfer::{Leg, RecordedState};

use super::world::{Action, Role, World, reconciler_takeover};
use super::{
    AMOUNT_MINOR, EXTERNAL_OPENING_MINOR, INTERNAL_OPENING_MINOR, ProtocolModel, TRANSFERS,
};

pub const LEGS_AGREE: &str = "a transfer is never confirmed on one leg and released on the other";
pub const NO_NEGATIVE_BALANCE: &str = "no balance is ever negative";
pub const EXTERNAL_CONSERVED: &str =
    "external money is conserved (available + reserved + confirmed == opening)";
pub const INTERNAL_MATCHES_CREDITS: &str =
    "internal available money is exactly the confirmed credits";
pub const CONFIRMED_ONLY_AFTER_COMMIT: &str =
    "nothing is confirmed at a participant unless the record is committed or succeeded";
pub const BOOKS_AGREE_AT_REST: &str =
    "at rest, institution confirmed == balance store confirmed == amount x succeeded transfers";
pub const NOTHING_HELD_AT_REST: &str = "at rest, nothing is held on either leg";
pub const FINISHES_ONCE_FAULTS_STOP: &str =
    "once faults stop, every transfer reaches a final state";
pub const CODE_RUNS_CLEAN: &str = "production code never panics nor strands a driver";
pub const SOME_TRANSFER_SUCCEEDS: &str = "a transfer succeeds";
pub const SOME_TRANSFER_FAILS: &str = "a transfer fails";
pub const ONE_SUCCEEDS_ONE_FAILS: &str = "one transfer succeeds and the other fails";

/// The longest fault-free schedule [`finish_without_faults`] runs before it calls a
/// transfer stuck. The protocol tests pin how many steps the worst reachable state
/// actually needs, well below this.
pub const SCHEDULE_STEPS_MAX: usize = 64;

fn status(world: &World, leg: Leg, transfer: usize) -> Option<&ReservationStatus> {
    world.book(leg).reservations[transfer]
        .as_ref()
        .map(|r| &r.status)
}

fn count(world: &World, leg: Leg, wanted: &ReservationStatus) -> i64 {
    (0..TRANSFERS)
        .filter(|&t| status(world, leg, t) == Some(wanted))
        .count() as i64
}

fn records_in(world: &World, wanted: RecordedState) -> i64 {
    world.records.iter().filter(|r| r.state == wanted).count() as i64
}

/// Every record is final and nothing is in flight: no money can move any more.
pub fn at_rest(world: &World) -> bool {
    world.records.iter().all(|r| r.state.is_final()) && world.network.is_empty()
}

pub fn legs_agree(_: &ProtocolModel, world: &World) -> bool {
    let released = |s: Option<&ReservationStatus>| {
        matches!(
            s,
            Some(ReservationStatus::Cancelled | ReservationStatus::Refused(_))
        )
    };
    let confirmed = |s: Option<&ReservationStatus>| s == Some(&ReservationStatus::Confirmed);
    (0..TRANSFERS).all(|t| {
        let (ext, int) = (
            status(world, Leg::External, t),
            status(world, Leg::BalanceStore, t),
        );
        !(confirmed(ext) && released(int) || confirmed(int) && released(ext))
    })
}

pub fn no_negative_balance(_: &ProtocolModel, world: &World) -> bool {
    world.books.iter().all(|book| {
        let b = book.balance;
        b.available_minor >= 0 && b.reserved_minor >= 0 && b.confirmed_minor >= 0
    })
}

pub fn external_conserved(_: &ProtocolModel, world: &World) -> bool {
    let b = world.book(Leg::External).balance;
    b.available_minor + b.reserved_minor + b.confirmed_minor == EXTERNAL_OPENING_MINOR
        && b.reserved_minor == AMOUNT_MINOR * count(world, Leg::External, &ReservationStatus::Held)
        && b.confirmed_minor
            == AMOUNT_MINOR * count(world, Leg::External, &ReservationStatus::Confirmed)
}

pub fn internal_matches_credits(_: &ProtocolModel, world: &World) -> bool {
    let b = world.book(Leg::BalanceStore).balance;
    let confirmed = AMOUNT_MINOR * count(world, Leg::BalanceStore, &ReservationStatus::Confirmed);
    b.available_minor == INTERNAL_OPENING_MINOR + confirmed
        && b.confirmed_minor == confirmed
        && b.reserved_minor
            == AMOUNT_MINOR * count(world, Leg::BalanceStore, &ReservationStatus::Held)
}

/// The money-audit rule's first clause (`banktransfer_protocol::audit`): no leg is
/// confirmed unless the record is committed or succeeded. Its other clauses hold only
/// once confirms and cancels have landed, which the at-rest properties check.
pub fn confirmed_only_after_commit(_: &ProtocolModel, world: &World) -> bool {
    (0..TRANSFERS).all(|t| {
        Leg::BOTH.iter().all(|&leg| {
            let view = ReservationView::of_status(status(world, leg, t));
            let mismatch = audit::leg_mismatch(world.records[t].state, leg, view);
            !matches!(
                mismatch,
                Some(Mismatch {
                    broken: Broken::ConfirmedWithoutCommit,
                    ..
                })
            )
        })
    })
}

pub fn books_agree_at_rest(_: &ProtocolModel, world: &World) -> bool {
    if !at_rest(world) {
        return true;
    }
    let succeeded = AMOUNT_MINOR * records_in(world, RecordedState::Succeeded);
    world.book(Leg::External).balance.confirmed_minor == succeeded
        && world.book(Leg::BalanceStore).balance.confirmed_minor == succeeded
}

pub fn nothing_held_at_rest(_: &ProtocolModel, world: &World) -> bool {
    !at_rest(world) || world.books.iter().all(|b| b.balance.reserved_minor == 0)
}

pub fn code_runs_clean(_: &ProtocolModel, world: &World) -> bool {
    world.broken.is_none()
}

pub fn some_transfer_succeeds(_: &ProtocolModel, world: &World) -> bool {
    records_in(world, RecordedState::Succeeded) > 0
}

pub fn some_transfer_fails(_: &ProtocolModel, world: &World) -> bool {
    records_in(world, RecordedState::Failed) > 0
}

pub fn one_succeeds_one_fails(_: &ProtocolModel, world: &World) -> bool {
    records_in(world, RecordedState::Succeeded) == 1
        && records_in(world, RecordedState::Failed) == 1
}

/// Liveness, checked as a safety property: from this world, once faults stop, a fair
/// fault-free schedule finishes every transfer within [`SCHEDULE_STEPS_MAX`] steps.
///
/// Why not `Property::eventually`: stateright documents that `eventually` is only sound
/// on acyclic paths, and this model has cycles on purpose (a reconciler may take a
/// transfer over, time out and take it over again, forever, while a participant keeps
/// failing). Running, from every reachable state, a deterministic fault-free schedule
/// through the model's own transition function turns "eventually final once faults
/// stop" into an invariant the checker verifies exhaustively. The schedule is the one
/// every fair fault-free run converges to: pending store writes run, every message is
/// delivered (no loss, no copy, no antifraud refusal), a call whose message is gone
/// times out, and the reconciler takes over what is left unfinished. Because the
/// protocol's decisions are durable and its messages idempotent, the order among these
/// steps does not change what the records end in; a transfer that can never finish (a
/// leg that refuses the decision for ever) makes the reconciler loop until the bound.
pub fn finishes_once_faults_stop(model: &ProtocolModel, world: &World) -> bool {
    finish_without_faults(model, world).is_ok()
}

/// Runs the fault-free schedule; the number of steps it takes, or why it does not finish.
pub fn finish_without_faults(model: &ProtocolModel, world: &World) -> Result<usize, String> {
    let mut world = world.clone();
    let mut visited: Vec<u64> = Vec::new();
    let mut on_path: HashSet<u64> = HashSet::new();
    let never = |model: &ProtocolModel, visited: &[u64], why: String| {
        // The schedule is deterministic: every world it went through ends the same way.
        model.finishing.remember_never(visited);
        Err(why)
    };
    for step in 0..=SCHEDULE_STEPS_MAX {
        let key = memo_key(model, &world);
        match model.finishing.lookup(key) {
            Some(Finishing::Within(rest)) if step + rest <= SCHEDULE_STEPS_MAX => {
                model.finishing.remember_within(&visited, step + rest);
                return Ok(step + rest);
            }
            Some(Finishing::Within(_)) => break,
            Some(Finishing::Never) => {
                return never(
                    model,
                    &visited,
                    format!(
                        "leads to a world already known not to finish after {step} fault-free steps"
                    ),
                );
            }
            None => {}
        }
        if !on_path.insert(key) {
            return never(
                model,
                &visited,
                format!("loops for ever: back to an earlier world after {step} fault-free steps"),
            );
        }
        visited.push(key);
        if let Some(why) = &world.broken {
            return never(
                model,
                &visited,
                format!("broken after {step} fault-free steps: {why}"),
            );
        }
        if world.records.iter().all(|r| r.state.is_final()) {
            model.finishing.remember_within(&visited, step);
            return Ok(step);
        }
        let Some(action) = next_fault_free_action(&world) else {
            return never(
                model,
                &visited,
                format!("stuck after {step} fault-free steps"),
            );
        };
        world.apply(model, &action);
    }
    Err(format!(
        "not final after {SCHEDULE_STEPS_MAX} fault-free steps: {:?}",
        world.records
    ))
}

/// The fault-free schedule from `world`, step by step, for at most `steps_max` steps
/// (for showing how a liveness counterexample gets stuck).
pub fn fault_free_run(
    model: &ProtocolModel,
    world: &World,
    steps_max: usize,
) -> Vec<(Action, World)> {
    let mut world = world.clone();
    let mut run = Vec::new();
    while run.len() < steps_max
        && world.broken.is_none()
        && !world.records.iter().all(|r| r.state.is_final())
    {
        let Some(action) = next_fault_free_action(&world) else {
            break;
        };
        world.apply(model, &action);
        run.push((action, world.clone()));
    }
    run
}

fn memo_key(model: &ProtocolModel, world: &World) -> u64 {
    // Deterministic (SipHash with fixed keys); the mutation changes the transitions.
    let mut hasher = std::hash::DefaultHasher::new();
    (model.mutation, world).hash(&mut hasher);
    hasher.finish()
}

/// What the fault-free schedule does from a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finishing {
    /// Every transfer is final after this many steps.
    Within(usize),
    /// It gets stuck, breaks, or loops for ever.
    Never,
}

/// Memo of the liveness check, shared by the clones of one model: what the fault-free
/// schedule does from each world it went through. Every world on a schedule is itself
/// reachable (the schedule only takes actions the model offers), so the memo holds at
/// most as many entries as the checker visits states, and each state's check costs O(1)
/// steps on average.
#[derive(Clone, Default)]
pub struct FinishingMemo(Arc<Mutex<HashMap<u64, Finishing>>>);

impl FinishingMemo {
    fn lookup(&self, key: u64) -> Option<Finishing> {
        self.0.lock().expect("memo lock").get(&key).copied()
    }

    fn remember_within(&self, visited: &[u64], total: usize) {
        let mut memo = self.0.lock().expect("memo lock");
        for (step, key) in visited.iter().enumerate() {
            memo.insert(*key, Finishing::Within(total - step));
        }
    }

    fn remember_never(&self, visited: &[u64]) {
        let mut memo = self.0.lock().expect("memo lock");
        for key in visited {
            memo.insert(*key, Finishing::Never);
        }
    }

    /// The most steps any world seen so far needs to finish.
    pub fn longest(&self) -> usize {
        let memo = self.0.lock().expect("memo lock");
        memo.values()
            .filter_map(|f| match f {
                Finishing::Within(steps) => Some(*steps),
                Finishing::Never => None,
            })
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Debug for FinishingMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "FinishingMemo({entries} worlds)")
    }
}

fn next_fault_free_action(world: &World) -> Option<Action> {
    let transfers = 0..TRANSFERS as u8;
    // 1. The mutant's deferred write.
    for role in Role::BOTH {
        for transfer in transfers.clone() {
            if world
                .driver(role, transfer)
                .is_some_and(|d| d.deferred_write.is_some())
            {
                return Some(Action::WriteDeferred { role, transfer });
            }
        }
    }
    // 2. Every request arrives and is answered.
    if let Some(request) = world.network.first() {
        return Some(Action::Deliver {
            request: *request,
            keep_copy: false,
            reply_lost: false,
            antifraud_refuses: false,
        });
    }
    // 3. Nothing in flight: a call still awaited lost its request or its answer, and
    //    times out.
    for role in Role::BOTH {
        for transfer in transfers.clone() {
            if let Some(call) = world.driver(role, transfer).and_then(|d| d.calls.first()) {
                return Some(Action::TimeOut {
                    role,
                    transfer,
                    call: *call,
                });
            }
        }
    }
    // 4. The reconciler picks up whatever is unfinished.
    for transfer in transfers {
        if world.driver(Role::Reconciler, transfer).is_some() {
            continue;
        }
        let takeover = reconciler_takeover(world.record(transfer));
        if matches!(takeover, Takeover::Abort | Takeover::Finish) {
            return Some(Action::Takeover { transfer, takeover });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! Each invariant can fail: break a world by hand and watch it say so.

    use banktransfer_protocol::reservation::{Reservation, ReservationStatus};
    use banktransfer_protocol::transfer::{Leg, RecordedState};

    use super::*;
    use crate::protocol_model::world::leg_ix;
    use crate::protocol_model::{Bounds, Mutation};

    fn model_and_world() -> (ProtocolModel, World) {
        let model = ProtocolModel::new(Bounds::NONE, Mutation::None);
        let world = World::initial(&model);
        (model, world)
    }

    fn set_status(world: &mut World, leg: Leg, transfer: usize, status: ReservationStatus) {
        world.books[leg_ix(leg)].reservations[transfer] = Some(Reservation {
            transfer_id: format!("T{transfer}"),
            terms: None,
            status,
        });
    }

    fn settle_everything(world: &mut World, state: RecordedState) {
        for record in &mut world.records {
            record.state = state;
        }
        world.network.clear();
        world.drivers = Default::default();
    }

    #[test]
    fn the_initial_world_satisfies_every_invariant() {
        let (model, world) = model_and_world();
        for check in [
            legs_agree,
            no_negative_balance,
            external_conserved,
            internal_matches_credits,
            confirmed_only_after_commit,
            books_agree_at_rest,
            nothing_held_at_rest,
            code_runs_clean,
            finishes_once_faults_stop,
        ] {
            assert!(check(&model, &world));
        }
    }

    #[test]
    fn money_invariants_fail_on_broken_books() {
        let (model, mut world) = model_and_world();
        world.books[0].balance.available_minor -= 2;
        assert!(!external_conserved(&model, &world));
        assert!(!no_negative_balance(&model, &world));
        let (model, mut world) = model_and_world();
        world.books[1].balance.available_minor += 1;
        assert!(!internal_matches_credits(&model, &world));
    }

    #[test]
    fn agreement_invariants_fail_on_split_legs() {
        let (model, mut world) = model_and_world();
        set_status(&mut world, Leg::External, 0, ReservationStatus::Confirmed);
        assert!(!confirmed_only_after_commit(&model, &world));
        set_status(
            &mut world,
            Leg::BalanceStore,
            0,
            ReservationStatus::Cancelled,
        );
        assert!(!legs_agree(&model, &world));
    }

    #[test]
    fn at_rest_invariants_fail_on_leftovers() {
        let (model, mut world) = model_and_world();
        settle_everything(&mut world, RecordedState::Succeeded);
        assert!(at_rest(&world));
        // Two succeeded transfers, nothing confirmed anywhere.
        assert!(!books_agree_at_rest(&model, &world));
        let (model, mut world) = model_and_world();
        settle_everything(&mut world, RecordedState::Failed);
        world.books[1].balance.reserved_minor = AMOUNT_MINOR;
        assert!(!nothing_held_at_rest(&model, &world));
        assert!(books_agree_at_rest(&model, &world));
    }

    #[test]
    fn liveness_fails_when_a_decision_can_never_be_carried_out() {
        let (model, mut world) = model_and_world();
        // Committed, but the external leg was cancelled: every confirm is refused.
        settle_everything(&mut world, RecordedState::Failed);
        world.records[0].state = RecordedState::Committed;
        set_status(&mut world, Leg::External, 0, ReservationStatus::Cancelled);
        let why = finish_without_faults(&model, &world).unwrap_err();
        assert!(why.contains("loops for ever"), "{why}");
        assert!(!finishes_once_faults_stop(&model, &world));
    }

    #[test]
    fn a_broken_world_is_reported() {
        let (model, mut world) = model_and_world();
        world.broken = Some("assertion".into());
        assert!(!code_runs_clean(&model, &world));
        assert!(!finishes_once_faults_stop(&model, &world));
    }
}
