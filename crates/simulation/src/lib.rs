//! A seeded deterministic simulation of the whole BankTransfer system: the real services
//! (their gRPC handlers, the coordinator's driver and approver, the reconciler's passes)
//! over turmoil's simulated network and clock, on in-memory stores behind the same
//! storage traits the SQL stores implement, with partitions, message loss and delays,
//! process crashes and restarts, and database failures, all drawn from one `u64` seed.
//! The same seed gives the same run.
//!
//! Map:
//! - [`config`]: [`SimConfig`] (seed, length, fault intensity) and the TEST-ONLY
//!   [`Mutation`] that removes one safety mechanism.
//! - [`world`]: the durable stores, the users' accounts, and the four service hosts.
//! - [`workload`]: the users' calls and the answers they got.
//! - [`faults`]: the seeded fault schedule and the healing at its end.
//! - [`weather`]: the databases' delays and failures, drawn per call.
//! - [`invariants`]: safety after every step, liveness and answers at rest.
//! - [`runner`]: one run, its [`Report`] or its [`Failure`] (with the replay command).
//! - [`trace`]: the recent-event log and the run's digest.
//! - [`net`], [`clock`], [`balance store`], [`rng`]: tonic over turmoil, simulated time, the
//!   balance store's screening in memory, seeded randomness.
//!
//! Running it (`tests/simulate.rs`):
//! - `cargo test -p banktransfer-simulation --test simulate`: the CI seeds, the replay
//!   check and the mutation check;
//! - `SIM_SEEDS=500 cargo test --release -p banktransfer-simulation --test simulate
//!   random_seeds -- --nocapture`: more seeds (`SIM_SEED_BASE` moves the range,
//!   `SIM_INTENSITY=0..10` the fault rate);
//! - `SIM_SEED=1234 cargo test -p banktransfer-simulation --test simulate random_seeds --
//!   --nocapture`: one seed, as a failure's replay line prints it.
//!
//! What makes a run repeatable: every random choice comes from streams derived from the
//! seed (turmoil's network, the fault schedule, each user, each database's failure planner,
//! the transfer ids, the reconciler's jitter); the epoch is fixed; the services read
//! turmoil's clock; every host runs on turmoil's single thread; stores are in memory
//! (no OS threads); the coordinator's driver polls its answers before its deadline
//! (`biased`); HTTP/2 never forgets a reset stream by the wall clock during a run
//! ([`net`]); and runs in one process take turns with tokio's task ids realigned
//! ([`runner`]), since tokio's task-drop order on a crash follows those ids.

pub mod clock;
pub mod config;
pub mod faults;
pub mod invariants;
pub mod net;
/// Seeded randomness, shared with the stores' batch tests.
pub use testkit::rng;
pub mod runner;
pub mod screening;
pub mod tokens;
pub mod trace;
pub mod weather;
pub mod workload;
pub mod world;

pub use config::{Mutation, SimConfig};
pub use runner::{Failure, Report, run};
