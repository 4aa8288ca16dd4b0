//! The deterministic simulation's tests.
//!
//! - `random_seeds`: a bounded number of seeds (CI); `SIM_SEEDS=N` runs N seeds from
//!   `SIM_SEED_BASE` (default 0); `SIM_SEED=s` runs exactly seed `s`. A failure prints
//!   the broken invariant, the step, the recent events and the command that replays it.
//!   `SIM_INTENSITY=0..10` changes how often faults strike (default 5);
//!   `SIM_MUTATION=ForgetTombstones|IgnoreDecisionGuard` removes a safety mechanism.
//! - `one_seed_replays_exactly`: the same seed twice, the same digest.
//! - `forgotten_tombstones_are_caught`: with the external book forgetting tombstones, some
//!   seed among a bounded set breaks `hold_after_final`.
//! - `ignored_decision_guard_is_caught` (ignored: the race it needs is rarer, about one
//!   seed in fifty; run it with `--ignored`, best in release): with the coordinator's store
//!   writing decisions without their compare-and-set, a late commit overwrites a retry's
//!   abort and the reconciler's audit rules break.

use std::time::Instant;

use banktransfer_simulation::{Mutation, SimConfig, run};

/// Seeds `random_seeds` runs by default: about 75 s in a debug build on two cores (a seed
/// takes about 3 s in debug, 0.3 s in release).
const CI_SEEDS: u64 = 24;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn env_mutation() -> Mutation {
    match std::env::var("SIM_MUTATION").as_deref() {
        Err(_) | Ok("" | "None") => Mutation::None,
        Ok("ForgetTombstones") => Mutation::ForgetTombstones,
        Ok("IgnoreDecisionGuard") => Mutation::IgnoreDecisionGuard,
        Ok(other) => {
            panic!("SIM_MUTATION={other:?}: use None, ForgetTombstones or IgnoreDecisionGuard")
        }
    }
}

#[test]
fn random_seeds() {
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
            let count = env_u64("SIM_SEEDS").unwrap_or(CI_SEEDS);
            (base..base + count).collect()
        }
    };
    let mutation = env_mutation();
    let intensity = env_u64("SIM_INTENSITY");
    let started = Instant::now();
    for &seed in &seeds {
        let seed_started = Instant::now();
        let mut config = SimConfig::new(seed).with_mutation(mutation);
        if let Some(intensity) = intensity {
            config.fault_intensity = intensity;
        }
        match run(config) {
            Ok(report) => println!("ok {report} [{:.1?}]", seed_started.elapsed()),
            Err(failure) => panic!("\n{failure}\n"),
        }
    }
    println!("{} seeds passed in {:.1?}", seeds.len(), started.elapsed());
}

#[test]
fn one_seed_replays_exactly() {
    let seed = env_u64("SIM_SEED").unwrap_or(42);
    let first = run(SimConfig::new(seed)).unwrap_or_else(|f| panic!("\n{f}\n"));
    let second = run(SimConfig::new(seed)).unwrap_or_else(|f| panic!("\n{f}\n"));
    assert_eq!(first, second, "seed {seed} ran differently twice");
    assert!(first.changes > 0, "{first}");
}

/// Runs `seeds` with `mutation` until one breaks `invariant`.
fn caught(mutation: Mutation, seeds: std::ops::Range<u64>, invariant: &str) {
    let mut outcomes = Vec::new();
    for seed in seeds {
        match run(SimConfig::new(seed).with_mutation(mutation)) {
            Err(failure) if failure.invariant == invariant => {
                println!("seed {seed} caught {mutation:?}:\n{failure}");
                return;
            }
            Err(failure) => outcomes.push(format!("seed {seed}: {}", failure.invariant)),
            Ok(report) => outcomes.push(format!("seed {seed}: passed ({report})")),
        }
    }
    panic!("no seed broke {invariant} with {mutation:?}: {outcomes:#?}");
}

#[test]
fn forgotten_tombstones_are_caught() {
    // About one seed in five catches it; the first is seed 2.
    caught(Mutation::ForgetTombstones, 0..30, "hold_after_final");
}

#[test]
#[ignore = "about one seed in fifty: run with --ignored, best with --release"]
fn ignored_decision_guard_is_caught() {
    // Seeds 24, 36, 116, 171 and 192 catch it.
    caught(Mutation::IgnoreDecisionGuard, 0..200, "reconciler_audit");
}
