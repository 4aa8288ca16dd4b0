//! "Show the checks can fail": each mutation removes one safety mechanism from the
//! production model, and the checker must find the property it protects violated, with a
//! shortest trace (printed). Under the same bounds the unmutated protocol passes
//! (`tests/protocol.rs`, `a_premature_takeover_by_the_reconciler`).

use std::collections::BTreeSet;

use banktransfer_model::counterexamples::{Study, mutation_study};
use banktransfer_model::protocol_model::Mutation;
use banktransfer_model::protocol_model::properties::{
    CODE_RUNS_CLEAN, CONFIRMED_ONLY_AFTER_COMMIT, FINISHES_ONCE_FAULTS_STOP,
    INTERNAL_MATCHES_CREDITS, LEGS_AGREE, NOTHING_HELD_AT_REST,
};

/// Prints the mutant's trace for `property` and checks it has `steps` steps and ends as
/// `last_line_contains` says; returns the violated properties.
fn caught(
    study: &Study,
    property: &'static str,
    steps: usize,
    last_line_contains: &[&str],
) -> BTreeSet<&'static str> {
    let mutation = &study.title;
    let (found_steps, trace) = study.trace(property);
    println!("{mutation:?} violates {property:?} in {found_steps} steps:\n{trace}");
    assert_eq!(found_steps, steps, "{mutation:?}: shortest trace length");
    let last = trace.lines().last().expect("a trace has states");
    for expected in last_line_contains {
        assert!(
            last.contains(expected),
            "{mutation:?}: the last state {last:?} should show {expected:?}"
        );
    }
    study.violated()
}

#[test]
fn without_tombstones_a_late_reserve_hangs_a_hold() {
    let violated = caught(
        &mutation_study(Mutation::NoTombstone),
        NOTHING_HELD_AT_REST,
        8,
        // Everything final, nothing in flight, yet the balance store holds a credit.
        &[
            "int 0/1/0",
            "T0 failed",
            "T1 failed",
            "int:held",
            "in flight: 0",
        ],
    );
    assert_eq!(violated, BTreeSet::from([NOTHING_HELD_AT_REST]));
}

#[test]
fn without_the_decision_compare_and_set_one_leg_confirms_and_the_other_cancels() {
    let violated = caught(
        &mutation_study(Mutation::NoDecisionCas),
        LEGS_AGREE,
        5,
        &["ext:cancelled int:confirmed"],
    );
    assert_eq!(
        violated,
        BTreeSet::from([LEGS_AGREE, FINISHES_ONCE_FAULTS_STOP])
    );
}

#[test]
fn sending_before_persisting_confirms_without_a_durable_commit() {
    let study = mutation_study(Mutation::SendBeforePersist);
    let violated = caught(
        &study,
        CONFIRMED_ONLY_AFTER_COMMIT,
        3,
        &["started ext:held int:confirmed"],
    );
    assert_eq!(
        violated,
        BTreeSet::from([
            LEGS_AGREE,
            CONFIRMED_ONLY_AFTER_COMMIT,
            FINISHES_ONCE_FAULTS_STOP
        ])
    );
    // And the reconciler's abort in that window splits the legs.
    let (steps, trace) = study.trace(LEGS_AGREE);
    assert_eq!(steps, 5);
    assert!(trace.contains("reconciler takes over T1: stale, abort"));
    assert!(trace.contains("aborted ext:cancelled int:confirmed"));
}

#[test]
fn a_confirm_applied_twice_creates_money() {
    let violated = caught(
        &mutation_study(Mutation::NonIdempotentConfirm),
        INTERNAL_MATCHES_CREDITS,
        6,
        // Two units available for one confirmed credit.
        &["int 2/0/2", "T0 committed ext:held int:confirmed"],
    );
    assert_eq!(
        violated,
        BTreeSet::from([
            INTERNAL_MATCHES_CREDITS,
            CODE_RUNS_CLEAN,
            FINISHES_ONCE_FAULTS_STOP
        ])
    );
}
