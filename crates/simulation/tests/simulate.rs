//! The deterministic simulation's tests.
//!
//! - `random_seeds`: a bounded number of seeds (CI); `SIM_SEEDS=N` runs N seeds from
//!   `SIM_SEED_BASE` (default 0); `SIM_SEED=s` runs exactly seed `s`. A failure prints
//!   the broken invariant, the step, the recent events and the command that replays it.
//! - `one_seed_replays_exactly`: the same seed twice, the same digest.
//! - `forgotten_tombstones_are_caught`: with the external book forgetting tombstones, some
//!   seed among a bounded set breaks `hold_after_final`.

use std::time::Instant;

use banktransfer_simulation::{Mutation, SimConfig, run};

/// Seeds `random_seeds` runs by default: about a minute and a half in a debug build on
/// two cores.
const CI_SEEDS: u64 = 6;

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
    let started = Instant::now();
    for &seed in &seeds {
        let seed_started = Instant::now();
        match run(SimConfig::new(seed).with_mutation(mutation)) {
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

#[test]
fn forgotten_tombstones_are_caught() {
    let mut outcomes = Vec::new();
    for seed in 0..20 {
        match run(SimConfig::new(seed).with_mutation(Mutation::ForgetTombstones)) {
            Err(failure) if failure.invariant == "hold_after_final" => {
                println!("seed {seed} caught the mutation:\n{failure}");
                return;
            }
            Err(failure) => outcomes.push(format!("seed {seed}: {}", failure.invariant)),
            Ok(report) => outcomes.push(format!("seed {seed}: passed ({report})")),
        }
    }
    panic!("no seed caught forgotten tombstones: {outcomes:#?}");
}
