//! The two seed designs, checked in the same checker: it must catch them losing and
//! creating money, and confirm what the seeds themselves claim holds.

use banktransfer_model::counterexamples::{Study, lock_studies, naive_studies};
use banktransfer_model::seed_lock::{
    FINISH_ASSERTION, INVARIANT_AT_REST, NO_OVERDRAFT, RELAXED_INVARIANT, STRICT_INVARIANT,
};
use banktransfer_model::seed_naive::{NO_MONEY_CREATED, NO_MONEY_LOST_AT_REST};

fn find<'a>(studies: &'a [Study], title_contains: &str) -> &'a Study {
    studies
        .iter()
        .find(|s| s.title.contains(title_contains))
        .unwrap_or_else(|| panic!("no study {title_contains:?}"))
}

fn show(study: &Study, property: &str) -> String {
    let (steps, trace) = study.trace(property);
    println!(
        "{}: {property:?} violated in {steps} steps:\n{trace}",
        study.title
    );
    trace.to_owned()
}

fn holds(study: &Study, property: &str) -> bool {
    !study.verdict(property).discovered
}

#[test]
fn naive_design_survives_the_refusal_it_was_drawn_for() {
    let studies = naive_studies();
    let refuses = find(&studies, "the balance store refuses");
    assert!(holds(refuses, NO_MONEY_LOST_AT_REST) && holds(refuses, NO_MONEY_CREATED));
    assert_eq!(refuses.unique_states, 9);
}

#[test]
fn naive_design_loses_money_when_the_gateway_crashes_before_queueing_the_reversal() {
    let studies = naive_studies();
    let crash = find(&studies, "the gateway crashes");
    assert!(holds(crash, NO_MONEY_CREATED));
    let trace = show(crash, NO_MONEY_LOST_AT_REST);
    assert_eq!(crash.trace(NO_MONEY_LOST_AT_REST).0, 3);
    // External debited, then the crash; nothing reaches the balance store, no reversal.
    let debit = trace.find("money leaves the external account").unwrap();
    let crashed = trace.find("the gateway crashes").unwrap();
    assert!(debit < crashed);
    assert!(!trace.contains("UpdateUserBalance") && !trace.contains("reversals queued 1"));
    assert!(trace.trim_end().ends_with("reversals queued 0"));
    assert!(
        trace.contains("external 0 + internal 0 = 0 (total 1) | gateway Crashed | in flight {}")
    );
}

#[test]
fn naive_design_creates_money_when_the_balance_store_answer_is_lost() {
    let studies = naive_studies();
    let lost_answer = find(&studies, "the balance store's answer is lost");
    assert!(holds(lost_answer, NO_MONEY_LOST_AT_REST));
    let trace = show(lost_answer, NO_MONEY_CREATED);
    assert_eq!(lost_answer.trace(NO_MONEY_CREATED).0, 7);
    let order = [
        "balance store handles UpdateUserBalance (credits the user)",
        "network loses UpdateUserBalanceAnswer",
        "gateway enqueues the reversal",
        "background worker runs UndoStartTransfer",
    ];
    let positions: Vec<usize> = order.iter().map(|s| trace.find(s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(trace.contains("external 1 + internal 1 = 2 (total 1)"));
}

#[test]
fn naive_design_also_loses_money_when_the_external_answer_is_lost() {
    let studies = naive_studies();
    let lost_answer = find(&studies, "the external institution's answer is lost");
    let trace = show(lost_answer, NO_MONEY_LOST_AT_REST);
    assert!(trace.contains("network loses StartTransferAnswer"));
    let all = find(&studies, "all faults");
    assert!(!holds(all, NO_MONEY_LOST_AT_REST) && !holds(all, NO_MONEY_CREATED));
    assert_eq!(all.unique_states, 30);
}

#[test]
fn lock_design_breaks_the_strict_invariant_even_without_crashes() {
    let studies = lock_studies();
    let no_crash = find(&studies, "no crash");
    let trace = show(no_crash, STRICT_INVARIANT);
    let last = trace.lines().last().unwrap();
    assert!(last.contains("runs MoveAlice => alice"), "{last}");
    for property in [
        RELAXED_INVARIANT,
        INVARIANT_AT_REST,
        FINISH_ASSERTION,
        NO_OVERDRAFT,
    ] {
        assert!(
            holds(no_crash, property),
            "{property:?} should hold without crashes"
        );
    }
    assert_eq!(no_crash.unique_states, 6_230);
}

#[test]
fn lock_design_loses_money_at_rest_after_a_crash_mid_transfer() {
    let studies = lock_studies();
    let crash = find(&studies, "its lock stays held");
    let trace = show(crash, INVARIANT_AT_REST);
    let moved = trace.find("runs MoveAlice").unwrap();
    let crashed = trace.find("crashes").unwrap();
    assert!(moved < crashed);
    assert!(!trace.contains("runs MoveBob"));
    assert!(
        holds(crash, RELAXED_INVARIANT),
        "money is missing, never created"
    );
    assert_eq!(crash.unique_states, 13_210);

    let lease = find(&studies, "released");
    show(lease, FINISH_ASSERTION);
    assert!(!holds(lease, FINISH_ASSERTION) && holds(lease, RELAXED_INVARIANT));
}
