//! The production protocol, model-checked exhaustively under growing fault bounds.
//!
//! Each test pins the number of unique states (so that any change to the model or to the
//! protocol core shows) and the longest fault-free schedule the liveness check needed,
//! and asserts every property: no counterexample to any invariant, an example of every
//! "sometimes". The two largest configurations are too slow for a debug build and run
//! only in release (`cargo test -p banktransfer-model --release`, and `-- --ignored` for
//! the largest one).

use banktransfer_model::check;
use banktransfer_model::protocol_model::properties::{
    ONE_SUCCEEDS_ONE_FAILS, SCHEDULE_STEPS_MAX, SOME_TRANSFER_FAILS, SOME_TRANSFER_SUCCEEDS,
};
use banktransfer_model::protocol_model::{Bounds, Mutation, ProtocolModel};

/// Checks the production protocol under `bounds`; returns the unique state count and the
/// longest fault-free schedule the liveness check needed.
fn verify(label: &str, bounds: Bounds) -> (usize, usize) {
    verify_model(label, ProtocolModel::new(bounds, Mutation::None))
}

fn verify_model(label: &str, model: ProtocolModel) -> (usize, usize) {
    let found = check::verify(&format!("production protocol, {label}"), model.clone());
    for example in [
        SOME_TRANSFER_SUCCEEDS,
        SOME_TRANSFER_FAILS,
        ONE_SUCCEEDS_ONE_FAILS,
    ] {
        assert!(
            found.discovered.contains(example),
            "no example of {example:?}"
        );
    }
    let longest = model.longest_fault_free_schedule();
    assert!(longest <= SCHEDULE_STEPS_MAX);
    println!("longest fault-free schedule to finish: {longest} steps");
    (found.unique_states, longest)
}

#[test]
fn no_fault_only_the_race_between_two_transfers() {
    assert_eq!(verify("no fault", Bounds::NONE), (356, 8));
}

#[test]
fn a_premature_takeover_by_the_reconciler() {
    let bounds = Bounds {
        premature_takeovers_max: 1,
        ..Bounds::NONE
    };
    assert_eq!(verify("one premature takeover", bounds), (7_477, 8));
}

#[test]
fn a_lost_message_and_a_premature_takeover() {
    let bounds = Bounds {
        losses_max: 1,
        premature_takeovers_max: 1,
        ..Bounds::NONE
    };
    assert_eq!(
        verify("one loss, one premature takeover", bounds),
        (210_310, 12)
    );
}

#[test]
fn a_duplicated_request_and_a_premature_takeover() {
    let bounds = Bounds {
        duplicates_max: 1,
        premature_takeovers_max: 1,
        ..Bounds::NONE
    };
    assert_eq!(
        verify("one duplicate, one premature takeover", bounds),
        (55_623, 8)
    );
}

#[test]
fn a_crash_and_a_premature_takeover() {
    let bounds = Bounds {
        crashes_max: 1,
        premature_takeovers_max: 1,
        ..Bounds::NONE
    };
    assert_eq!(
        verify("one crash, one premature takeover", bounds),
        (68_453, 11)
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "1.4 million states: run with cargo test --release"
)]
fn a_loss_a_crash_and_a_premature_takeover() {
    let bounds = Bounds {
        losses_max: 1,
        crashes_max: 1,
        premature_takeovers_max: 1,
        ..Bounds::NONE
    };
    assert_eq!(
        verify("one loss, one crash, one premature takeover", bounds),
        (1_372_690, 14)
    );
}

#[test]
#[ignore = "9 million states, about 6 minutes and 6 GB in release: cargo test --release -- --ignored"]
fn one_fault_of_each_kind() {
    assert_eq!(
        verify("one fault of each kind", Bounds::ONE_OF_EACH),
        (8_980_360, 15)
    );
}

#[test]
#[ignore = "12 million states, about 6 minutes and 6 GB in release: cargo test --release -- --ignored"]
fn impatient_drivers_without_faults() {
    let mut model = ProtocolModel::new(Bounds::NONE, Mutation::None);
    model.impatient = true;
    assert_eq!(
        verify_model("drivers that give up on any call at any moment", model),
        (12_214_237, 18)
    );
}
