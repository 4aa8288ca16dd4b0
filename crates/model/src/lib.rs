//! Exhaustive model checking (stateright 0.31, breadth-first) of BankTransfer's protocol,
//! and of the two seed designs it replaces, which the checker catches losing or creating
//! money.
//!
//! Map:
//! - [`protocol_model`]: the production protocol. What decides is production code from
//!   `banktransfer-protocol`, called as the services call it:
//!   - the coordinator: [`TransferMachine`](banktransfer_protocol::transfer::TransferMachine)
//!     `begin` (gateway), `resume` (reconciler) and `handle`, driven the way
//!     `coordinator/src/driver.rs` drives it ([`protocol_model::world`]);
//!   - the participants: `reservation::{reserve, confirm, cancel}` over `Reservation` and
//!     `Balance`, handled the way `participant/src/store` and `participant/src/grpc` do
//!     ([`protocol_model::participant`]); the answers on the wire as
//!     `coordinator/src/participants/grpc.rs` reads them;
//!   - the reconciler's choice: `reconcile::takeover`, with abstract time (an undecided
//!     transfer is always stale when looked at: the worst case).
//!
//!   What is modelled, not production: the transfer log (one durable row per transfer; the
//!   decision is a compare-and-set `started -> decision` and the driver is told what the
//!   row holds, as `store/sql.rs` does), the network, timeouts, crashes and the lease.
//!   [`protocol_model::properties`] holds the invariants, the liveness check and the
//!   "sometimes" examples; [`protocol_model::Mutation`] removes one safety mechanism at a
//!   time to show the checks fail without it.
//! - [`seed_naive`]: seed 000 (StartTransfer, then UpdateUserBalance, then a reversal queue).
//! - [`seed_lock`]: seed 003 (the TLA+ transfer with a lock and a two-step move).
//! - [`counterexamples`]: the studies behind `docs/counterexamples.md` (regenerate it with
//!   `cargo run -p banktransfer-model --example counterexamples`).
//! - [`check`]: running the checker, shortest counterexamples, readable traces.
//! - [`production`]: calling production code so that a firing assertion becomes a finding.
//!
//! The protocol world, and its bounds (all constants are asserted at compile time or when
//! a model starts):
//! - two concurrent transfers T0 and T1 of [`protocol_model::AMOUNT_MINOR`] each, on the
//!   same pair of accounts: `ext` (Side::Debit) at the external institution, funded for
//!   exactly one transfer, and `int` (Side::Credit) in our balance store, empty;
//! - the balance store's antifraud screening may refuse T0's first reserve;
//! - one gateway driver per transfer (volatile), at most one reconciler driver per
//!   transfer (volatile; the lease), one durable record per transfer, durable books;
//! - a network that delays and reorders requests at will, and within
//!   [`protocol_model::Bounds`] loses a request or an answer, delivers a request twice,
//!   crashes the gateway or the reconciler, and lets the reconciler take over a transfer
//!   whose gateway driver is still alive ("premature takeover");
//! - a driver times out a call when no answer can come any more; the gateway's reserve
//!   deadline then passes too.
//!
//! Reductions that keep the state space small, each argued where it is made: a call is one
//! step (the participant acts and its answer reaches the caller, or is lost); requests in
//! flight form a set; a driver that learned the decision of a transfer now final is dropped;
//! a call that can still be answered is not timed out (its late delivery is what
//! premature takeovers and crashes produce; `ProtocolModel::impatient` lifts this, for a
//! deep run).
//!
//! Tests: `tests/protocol.rs` pins the state counts and asserts every property (the
//! largest configurations run only in release builds, the deepest only with `--ignored`);
//! `tests/mutations.rs` shows each mechanism's removal caught; `tests/seeds.rs` the seeds'
//! failures; `tests/counterexamples_doc.rs` that the document is current.

pub mod check;
pub mod counterexamples;
pub mod production;
pub mod protocol_model;
pub mod seed_lock;
pub mod seed_naive;
