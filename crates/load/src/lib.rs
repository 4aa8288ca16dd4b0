//! The BankTransfer load generator (`banktransfer-load`): measures the transfer path of the
//! four real release binaries (started here through the e2e harness, or a running system
//! named by address) under open- and closed-loop load, and checks the ledger after every
//! run. Benchmarks, not tests: nothing here asserts a latency.
//!
//! Map:
//! - [`args`]: the command line and its validation.
//! - [`users`]: the load's users and their accounts; round-robin over them.
//! - [`cluster`]: the tool's own cluster's configuration (per-user rules relaxed).
//! - [`target`]: the clients: a few gateway channels round-robin, tokens, the auditor's reads.
//! - [`system`]: own cluster or running system; CPU probe; the ledger check with the
//!   harness's full check on request.
//! - [`schedule`]: the open loop's schedule (pure).
//! - [`driver`]: open and closed loops, retries, the progress bar.
//! - [`stats`]: HDR percentiles, outcome counts, rates (pure).
//! - [`cpu`]: CPU seconds from `/proc`.
//! - [`ledger`]: rest, conservation, the per-user comparison.
//! - [`run`], [`sweep`], [`chaos`]: the three subcommands; [`postgres`]: chaos's private
//!   PostgreSQL server; [`plot`]: the sweep's SVG; [`output`]: printing and JSON.

pub mod args;
pub mod chaos;
pub mod cluster;
pub mod cpu;
pub mod driver;
pub mod ledger;
pub mod output;
pub mod plot;
pub mod postgres;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod sweep;
pub mod system;
pub mod target;
pub mod users;
