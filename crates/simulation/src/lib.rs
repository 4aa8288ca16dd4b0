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
//! - [`net`], [`clock`], [`ledger`], [`rng`]: tonic over turmoil, simulated time, the
//!   balance store's screening in memory, seeded randomness.

pub mod clock;
pub mod config;
pub mod faults;
pub mod invariants;
pub mod ledger;
pub mod net;
pub mod rng;
pub mod runner;
pub mod trace;
pub mod weather;
pub mod workload;
pub mod world;

pub use config::{Mutation, SimConfig};
pub use runner::{Failure, Report, run};
