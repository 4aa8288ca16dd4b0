//! The studies behind `docs/counterexamples.md`: each runs one model configuration
//! exhaustively, records which properties hold, and finds a shortest trace for each
//! violated property it headlines. The tests assert on these studies; the example
//! `counterexamples` writes them into the document.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;

use stateright::Expectation;

use crate::check::{self, Narrate};
use crate::protocol_model::{Bounds, Mutation, ProtocolModel, properties as protocol};
use crate::seed_lock::{self, LockModel};
use crate::seed_naive::{self, NaiveFaults, NaiveModel};

/// The command that regenerates the document.
pub const REGENERATE: &str = "cargo run -p banktransfer-model --example counterexamples";

/// Where the document lives, relative to this crate.
pub const DOCUMENT_PATH: &str = "../../docs/counterexamples.md";

/// One property's fate in one configuration.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub property: &'static str,
    pub expectation: Expectation,
    /// A counterexample (always) or an example (sometimes) exists.
    pub discovered: bool,
    /// A shortest counterexample, for the headline properties: its step count and
    /// its trace.
    pub trace: Option<(usize, String)>,
}

impl Verdict {
    pub fn violated(&self) -> bool {
        self.discovered && self.expectation != Expectation::Sometimes
    }
}

/// One model configuration, explored exhaustively.
#[derive(Clone, Debug)]
pub struct Study {
    pub title: String,
    /// What the configuration shows, for the document.
    pub story: String,
    pub unique_states: usize,
    pub verdicts: Vec<Verdict>,
}

impl Study {
    pub fn verdict(&self, property: &str) -> &Verdict {
        self.verdicts
            .iter()
            .find(|v| v.property == property)
            .unwrap_or_else(|| panic!("{}: no property {property:?}", self.title))
    }

    pub fn violated(&self) -> BTreeSet<&'static str> {
        self.verdicts
            .iter()
            .filter(|v| v.violated())
            .map(|v| v.property)
            .collect()
    }

    /// The shortest counterexample found for a headline property.
    pub fn trace(&self, property: &str) -> (usize, &str) {
        let (steps, trace) = self
            .verdict(property)
            .trace
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no trace for {property:?}", self.title));
        (*steps, trace)
    }
}

/// Explores `model` fully, then finds a shortest trace for each violated property in
/// `headlines`.
pub fn study<M>(title: &str, story: &str, model: M, headlines: &[&'static str]) -> Study
where
    M: Narrate + Clone + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq,
{
    let explored = check::explore(title, model.clone());
    let verdicts = model
        .properties()
        .into_iter()
        .map(|p| {
            let discovered = explored.discovered.contains(p.name);
            let headline = headlines.contains(&p.name);
            let trace =
                (headline && discovered && p.expectation != Expectation::Sometimes).then(|| {
                    let found = check::shortest_counterexample(&model, p.name)
                        .expect("a discovered violation has a shortest trace");
                    let mut trace = check::render_trace(&model, &found.path);
                    if let Some(epilogue) = model.epilogue(p.name, found.last_state()) {
                        trace.push_str(&epilogue);
                    }
                    (found.steps(), trace)
                });
            Verdict {
                property: p.name,
                expectation: p.expectation,
                discovered,
                trace,
            }
        })
        .collect::<Vec<_>>();
    for headline in headlines {
        assert!(
            verdicts.iter().any(|v| v.property == *headline),
            "{title}: no property {headline:?}"
        );
    }
    Study {
        title: title.to_owned(),
        story: story.to_owned(),
        unique_states: explored.unique_states,
        verdicts,
    }
}

/// The bounds the mutation studies use: no network fault, only the one premature
/// takeover (the race every mechanism is there for). The production protocol passes
/// under the same bounds (see `tests/protocol.rs`).
pub const MUTATION_BOUNDS: Bounds = Bounds {
    premature_takeovers_max: 1,
    ..Bounds::NONE
};

/// The property each mutation is expected to break first, and what the mutant removes.
pub fn mutation_expectation(mutation: Mutation) -> (&'static [&'static str], &'static str) {
    match mutation {
        Mutation::None => (&[], "the production protocol"),
        Mutation::NoTombstone => (
            &[protocol::NOTHING_HELD_AT_REST],
            "A cancel for a transfer the participant has never seen records nothing (the tombstone \
             `reservation::cancel` returns is dropped). The reserve that arrives after it hangs a \
             hold that nobody will ever release.",
        ),
        Mutation::NoDecisionCas => (
            &[protocol::LEGS_AGREE, protocol::FINISHES_ONCE_FAULTS_STOP],
            "The decision write overwrites whatever the record holds instead of compare-and-set \
             `started -> decision`. The reconciler's abort and the gateway's commit both act: one \
             leg is confirmed, the other cancelled.",
        ),
        Mutation::SendBeforePersist => (
            &[protocol::CONFIRMED_ONLY_AFTER_COMMIT, protocol::LEGS_AGREE],
            "The driver sends Confirm as soon as the machine asks to record the commit and \
             writes the commit in a later step. A leg is confirmed while the record still says \
             started; the reconciler's abort in between then cancels the other leg.",
        ),
        Mutation::NonIdempotentConfirm => (
            &[
                protocol::INTERNAL_MATCHES_CREDITS,
                protocol::CODE_RUNS_CLEAN,
            ],
            "A replayed confirm on a confirmed reservation is applied again (the participant \
             runs `reservation::confirm` on a held copy). The second confirm of the balance \
             store credits the user twice: money is created. At the external institution the \
             same replay trips the reservation book's own assertion (nothing left reserved), \
             which the model reports as a broken run.",
        ),
    }
}

pub fn mutation_study(mutation: Mutation) -> Study {
    let (headlines, story) = mutation_expectation(mutation);
    study(
        &format!("protocol, mutation {mutation:?}"),
        story,
        ProtocolModel::new(MUTATION_BOUNDS, mutation),
        headlines,
    )
}

pub const MUTATIONS: [Mutation; 4] = [
    Mutation::NoTombstone,
    Mutation::NoDecisionCas,
    Mutation::SendBeforePersist,
    Mutation::NonIdempotentConfirm,
];

/// The naive design, one study per fault (and one with all of them).
pub fn naive_studies() -> Vec<Study> {
    let lost = seed_naive::NO_MONEY_LOST_AT_REST;
    let created = seed_naive::NO_MONEY_CREATED;
    let configs: [(&str, &str, NaiveFaults, &[&'static str]); 5] = [
        (
            "naive seed, faults: the balance store refuses",
            "The failure the design was drawn for: the balance store refuses, the reversal \
             runs, nothing is lost.",
            NaiveFaults {
                internal_refuses: true,
                ..NaiveFaults::default()
            },
            &[lost, created],
        ),
        (
            "naive seed, faults: the gateway crashes",
            "Money LOST: the gateway crashes after the external institution moved the money and \
             before any reversal is queued. External debited, internal never credited, no \
             reversal.",
            NaiveFaults {
                gateway_crash: true,
                ..NaiveFaults::default()
            },
            &[lost, created],
        ),
        (
            "naive seed, faults: the balance store's answer is lost",
            "Money CREATED: the balance store applies the update but its answer is lost; the \
             gateway reverses anyway. External refunded AND internal credited.",
            NaiveFaults {
                internal_reply_lost: true,
                ..NaiveFaults::default()
            },
            &[lost, created],
        ),
        (
            "naive seed, faults: the external institution's answer is lost",
            "Money LOST without any crash: the external institution moved the money, its answer \
             is lost, the gateway fails the request and has nothing to reverse.",
            NaiveFaults {
                external_reply_lost: true,
                ..NaiveFaults::default()
            },
            &[lost, created],
        ),
        (
            "naive seed, all faults",
            "Everything at once: both violations, by their shortest routes.",
            NaiveFaults::ALL,
            &[lost, created],
        ),
    ];
    configs
        .into_iter()
        .map(|(title, story, faults, headlines)| {
            study(title, story, NaiveModel { faults }, headlines)
        })
        .collect()
}

/// The lock-based design, without crashes, with crashes, and with a lock released on
/// crash.
pub fn lock_studies() -> Vec<Study> {
    let configs: [(&str, &str, LockModel, &[&'static str]); 3] = [
        (
            "lock seed, no crash",
            "The seed's own observation: with MoveAlice and MoveBob as separate steps the strict \
             invariant fails between them, even under the lock; the relaxed `<=` invariant and the \
             assertion at Finish hold.",
            LockModel {
                crashes: false,
                lock_released_on_crash: false,
            },
            &[seed_lock::STRICT_INVARIANT],
        ),
        (
            "lock seed, a process may crash (its lock stays held)",
            "A crash between MoveAlice and MoveBob: the money withdrawn from alice never reaches \
             bob, and with the lock held for ever the system is at rest with money missing.",
            LockModel {
                crashes: true,
                lock_released_on_crash: false,
            },
            &[seed_lock::INVARIANT_AT_REST],
        ),
        (
            "lock seed, a process may crash (its lock is released, as a lease would be)",
            "Releasing a dead holder's lock does not help: the other process runs and its own \
             assertion at Finish fails, since the crashed process's money is still in transit.",
            LockModel {
                crashes: true,
                lock_released_on_crash: true,
            },
            &[seed_lock::INVARIANT_AT_REST, seed_lock::FINISH_ASSERTION],
        ),
    ];
    configs
        .into_iter()
        .map(|(title, story, model, headlines)| study(title, story, model, headlines))
        .collect()
}

fn render_study(out: &mut String, study: &Study) {
    out.push_str(&format!("### {}\n\n{}\n\n", study.title, study.story));
    out.push_str(&format!(
        "{} unique states explored.\n\n| property | verdict |\n|---|---|\n",
        study.unique_states
    ));
    for v in &study.verdicts {
        let verdict = match (v.expectation.clone(), v.discovered) {
            (Expectation::Sometimes, true) => "example found".to_owned(),
            (Expectation::Sometimes, false) => "never happens".to_owned(),
            (_, false) => "holds".to_owned(),
            (_, true) => match &v.trace {
                Some((steps, _)) => format!("**VIOLATED** (shortest trace: {steps} steps)"),
                None => "**VIOLATED**".to_owned(),
            },
        };
        out.push_str(&format!("| {} | {verdict} |\n", v.property));
    }
    out.push('\n');
    for v in &study.verdicts {
        if let Some((steps, trace)) = &v.trace {
            out.push_str(&format!(
                "Shortest counterexample to \"{}\" ({steps} steps):\n\n```text\n{trace}```\n\n",
                v.property
            ));
        }
    }
}

/// The whole document, deterministic: the same models give the same text.
pub fn document() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Counterexamples found by the model checker\n\n\
         Generated by `{REGENERATE}`; do not edit by hand. \
         `cargo test -p banktransfer-model` fails when this file is out of date.\n\n\
         Every trace is a shortest one (breadth-first search), printed one step per line: the \
         action, then the state it led to. The models and their bounds are described in \
         `crates/model/src/lib.rs`.\n\n"
    ));
    out.push_str(
        "The production protocol itself has no counterexample: `tests/protocol.rs` checks \
         every property exhaustively, with no fault, then with one premature takeover by the \
         reconciler combined with one lost message, one duplicated request or one crash, and \
         (in release builds) with a loss, a crash and a premature takeover together; \
         `cargo test -p banktransfer-model --release -- --ignored` adds one fault of every kind \
         at once, and drivers that give up on calls still in flight. The state counts are \
         pinned there.\n\n",
    );
    out.push_str(
        "## 1. The production protocol with one safety mechanism removed\n\n\
         The production model (the real `TransferMachine`, reservation book and reconciler \
         rule; see `crates/model/src/protocol_model`) with one `Mutation` each. Bounds: no loss, \
         no duplicate, no crash, one premature takeover by the reconciler; under the same \
         bounds the unmutated protocol satisfies every property.\n\n\
         Balances read `available/reserved/confirmed`; `ext` is the user's account at the \
         external institution (funded for one transfer), `int` her account in our balance \
         store. `[gw]`/`[rc]` mark a live gateway/reconciler driver.\n\n",
    );
    for mutation in MUTATIONS {
        render_study(&mut out, &mutation_study(mutation));
    }
    out.push_str(
        "## 2. Seed design 000: call the external institution, then the balance store, reverse on error\n\n\
         See `crates/model/src/seed_naive.rs`. One transfer of 1; the external account holds 1, \
         the internal one 0; `external + internal` must be 1 whenever nothing is in transit.\n\n",
    );
    for study in naive_studies() {
        render_study(&mut out, &study);
    }
    out.push_str(
        "## 3. Seed design 003: a shared lock around two separate money movements\n\n\
         See `crates/model/src/seed_lock.rs`: the seed's PlusCal, two processes, each moving a \
         nondeterministic `money` in 1..20 from alice (10) to bob (10).\n\n",
    );
    for study in lock_studies() {
        render_study(&mut out, &study);
    }
    out
}
