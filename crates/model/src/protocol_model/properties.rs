//! What must hold in every reachable world, and what must be possible.

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
pub const LEDGERS_AGREE_AT_REST: &str =
    "at rest, ext confirmed == int confirmed == amount x succeeded transfers";
pub const NOTHING_HELD_AT_REST: &str = "at rest, nothing is held on either leg";
pub const FINISHES_ONCE_FAULTS_STOP: &str =
    "once faults stop, every transfer reaches a final state";
pub const CODE_RUNS_CLEAN: &str = "production code never panics nor strands a driver";
pub const SOME_TRANSFER_SUCCEEDS: &str = "a transfer succeeds";
pub const SOME_TRANSFER_FAILS: &str = "a transfer fails";
pub const ONE_SUCCEEDS_ONE_FAILS: &str = "one transfer succeeds and the other fails";

/// The longest fault-free schedule [`finish_without_faults`] runs. Two transfers need
/// about 30 steps from the worst state (see the test that measures it).
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
            status(world, Leg::Internal, t),
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
    let b = world.book(Leg::Internal).balance;
    let confirmed = AMOUNT_MINOR * count(world, Leg::Internal, &ReservationStatus::Confirmed);
    b.available_minor == INTERNAL_OPENING_MINOR + confirmed
        && b.confirmed_minor == confirmed
        && b.reserved_minor == AMOUNT_MINOR * count(world, Leg::Internal, &ReservationStatus::Held)
}

pub fn confirmed_only_after_commit(_: &ProtocolModel, world: &World) -> bool {
    (0..TRANSFERS).all(|t| {
        let committed = matches!(
            world.records[t].state,
            RecordedState::Committed | RecordedState::Succeeded
        );
        committed
            || Leg::BOTH
                .iter()
                .all(|&leg| status(world, leg, t) != Some(&ReservationStatus::Confirmed))
    })
}

pub fn ledgers_agree_at_rest(_: &ProtocolModel, world: &World) -> bool {
    if !at_rest(world) {
        return true;
    }
    let succeeded = AMOUNT_MINOR * records_in(world, RecordedState::Succeeded);
    world.book(Leg::External).balance.confirmed_minor == succeeded
        && world.book(Leg::Internal).balance.confirmed_minor == succeeded
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

/// Runs the fault-free schedule; the number of steps it took, or why it did not finish.
pub fn finish_without_faults(model: &ProtocolModel, world: &World) -> Result<usize, String> {
    let mut world = world.clone();
    for step in 0..=SCHEDULE_STEPS_MAX {
        if let Some(why) = &world.broken {
            return Err(format!("broken after {step} fault-free steps: {why}"));
        }
        if world.records.iter().all(|r| r.state.is_final()) {
            return Ok(step);
        }
        let Some(action) = next_fault_free_action(&world) else {
            return Err(format!("stuck after {step} fault-free steps"));
        };
        world.apply(model, &action);
    }
    Err(format!(
        "not final after {SCHEDULE_STEPS_MAX} fault-free steps: {:?}",
        world.records
    ))
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
