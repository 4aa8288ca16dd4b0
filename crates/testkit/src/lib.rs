//! Test support for the BankTransfer workspace. Only tests, the simulation and test tools
//! depend on it (service crates as a dev-dependency): no release binary links it, so the
//! production crates export no test machinery.
//!
//! Map:
//! - [`db`]: throw-away databases for tests that run on a real back end: a SQLite file in
//!   a temporary directory, and a uniquely named PostgreSQL database dropped afterwards
//!   ([`db::all`] gives every back end reachable here).

pub mod db;
