//! Running the checker: exhaustive runs, shortest counterexamples, readable traces.
//!
//! Every run is breadth-first on one thread, so it is deterministic: the same model gives
//! the same state count and the same trace on every machine.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path};

/// How a model talks about itself in a trace: one line per step.
pub trait Narrate: Model {
    /// What an action does, in words ("gateway records the decision for T0").
    fn describe(&self, action: &Self::Action) -> String;
    /// The state after a step: balances first, then whatever explains them.
    fn summarize(&self, state: &Self::State) -> String;
    /// Lines to print after a counterexample to `property` that ends in `state`, when the
    /// trace alone does not show the violation (a liveness check's stuck continuation).
    fn epilogue(&self, _property: &'static str, _state: &Self::State) -> Option<String> {
        None
    }
}

/// What an exhaustive run found.
#[derive(Debug)]
pub struct Exhaustive {
    pub unique_states: usize,
    pub elapsed: Duration,
    /// Names of the properties with a discovery: counterexamples for `always`, examples for
    /// `sometimes`.
    pub discovered: BTreeSet<&'static str>,
}

/// Explores every reachable state (the run stops early only if every property has a
/// discovery) and asserts the properties: no counterexample to any `always`, an example
/// of every `sometimes`. Prints the state count and the time taken.
pub fn verify<M>(label: &str, model: M) -> Exhaustive
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq,
{
    let started = Instant::now();
    let checker = model.checker().spawn_bfs().join();
    let elapsed = started.elapsed();
    let unique_states = checker.unique_state_count();
    println!(
        "{label}: {unique_states} unique states, {} generated, max depth {}, in {:.2?}",
        checker.state_count(),
        checker.max_depth(),
        elapsed
    );
    checker.assert_properties();
    Exhaustive {
        unique_states,
        elapsed,
        discovered: checker.discoveries().keys().copied().collect(),
    }
}

/// Explores every reachable state without asserting anything; reports what was found.
pub fn explore<M>(label: &str, model: M) -> Exhaustive
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq,
{
    let started = Instant::now();
    let checker = model
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::new()))
        .spawn_bfs()
        .join();
    let elapsed = started.elapsed();
    let unique_states = checker.unique_state_count();
    let discovered: BTreeSet<&'static str> = checker.discoveries().keys().copied().collect();
    println!(
        "{label}: {unique_states} unique states in {elapsed:.2?}; discoveries: {discovered:?}"
    );
    Exhaustive {
        unique_states,
        elapsed,
        discovered,
    }
}

/// A violated property and one of its shortest traces.
pub struct Counterexample<M: Model> {
    pub property: &'static str,
    pub path: Path<M::State, M::Action>,
    pub elapsed: Duration,
}

impl<M: Model> Counterexample<M> {
    /// Steps taken (the trace has one more state than it has steps).
    pub fn steps(&self) -> usize
    where
        M::State: Clone,
        M::Action: Clone,
    {
        self.path.clone().into_actions().len()
    }

    pub fn last_state(&self) -> &M::State {
        self.path.last_state()
    }
}

/// Searches breadth-first for a state violating `property` and returns a shortest path
/// to one, or None when no reachable state violates it.
///
/// stateright's BFS records a discovery per property and may overwrite it with a later
/// (equally deep or deeper) violating state of the same block of work, so the first
/// discovery is not necessarily shortest. Each further run is bounded to paths strictly
/// shorter than the best one so far; the search ends when such a run finds nothing.
pub fn shortest_counterexample<M>(model: &M, property: &'static str) -> Option<Counterexample<M>>
where
    M: Model + Clone + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq,
{
    assert!(
        model.properties().iter().any(|p| p.name == property),
        "the model has no property named {property:?}"
    );
    let started = Instant::now();
    let mut best: Option<Path<M::State, M::Action>> = None;
    loop {
        let mut builder = model
            .clone()
            .checker()
            .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])));
        if let Some(path) = &best {
            // A path of n states ends at depth n; depth >= the bound is not checked.
            builder = builder.target_max_depth(path.clone().into_states().len());
        }
        let checker = builder.spawn_bfs().join();
        match checker.discovery(property) {
            Some(shorter) => best = Some(shorter),
            None => break,
        }
    }
    best.map(|path| Counterexample {
        property,
        path,
        elapsed: started.elapsed(),
    })
}

/// One line per step: the action, then (after `=>`) the state it led to.
pub fn render_trace<M>(model: &M, path: &Path<M::State, M::Action>) -> String
where
    M: Narrate,
    M::State: Clone,
    M::Action: Clone,
{
    let steps = path.clone().into_vec();
    let mut out = String::new();
    let mut action: Option<M::Action> = None;
    for (i, (state, next_action)) in steps.into_iter().enumerate() {
        let what = match &action {
            None => "initial state".to_owned(),
            Some(action) => model.describe(action),
        };
        out.push_str(&format!("{i:>3}. {what} => {}\n", model.summarize(&state)));
        action = next_action;
    }
    out
}
