//! Test support for the BankTransfer workspace. Only tests, the simulation and test tools
//! depend on it (service crates as a dev-dependency): no release binary links it, so the
//! production crates export no test machinery.
//!
//! Map:
//! - [`db`]: throw-away databases for tests that run on a real back end: a SQLite file in
//!   a temporary directory, and a uniquely named PostgreSQL database dropped afterwards
//!   ([`db::all`] gives every back end reachable here).
//! - [`sim_db`]: what both in-memory stores share: one simulated database (its tables
//!   under one lock, a change counter, the TEST-ONLY mutation switch) and its planned
//!   store failures ([`sim_db::FailurePlan`]: a delay, a call in flight, an unreachable
//!   database, a reply lost after the commit), drawn per call by the simulation's weather.
//! - [`memory_transfer_store`]: fakes the coordinator's transfer log
//!   (`coordinator::store::TransferStore`) with the SQL statements' guards, for the
//!   deterministic simulation (sqlx's SQLite runs on OS threads, which a simulated clock
//!   cannot order); its mutation [`memory_transfer_store::StoreMutation`] drops the
//!   decision's compare-and-set.
//! - [`memory_book`]: fakes a participant's reservation book
//!   (`participant::ReservationBook`) over the same pure decisions, for the same reason;
//!   its mutation [`memory_book::BookMutation`] forgets cancel tombstones.
//! - [`participants`]: [`participants::FakeParticipants`] fakes both participants (the
//!   coordinator's `Participants` client) for the gateway's and the reconciler's tests:
//!   scripted answers and delays, a reservation book with the real participants' rules,
//!   and a record of every call, without a network or a database.
//!
//! - [`pki`]: [`pki::TestPki`], a throw-away development PKI: TLS settings for a service,
//!   TLS channels as any identity (a service, the operator, or none), bearer tokens.
//! - [`rng`]: [`rng::SimRng`], seeded SplitMix64 streams: the simulation's randomness, and
//!   the seeded cases of the stores' batch tests.
//!
//! A mutation is a deliberate bug, switched on only by the simulation's mutation tests to
//! show that the invariants catch it; a store failure is the weather a correct system must
//! survive.

pub mod db;
pub mod memory_book;
pub mod memory_transfer_store;
pub mod participants;
pub mod pki;
pub mod rng;
pub mod sim_db;
