//! End-to-end harness for BankTransfer: starts the four real binaries as child processes
//! on free ports with fresh databases, drives them over gRPC, kills and restarts them, and
//! checks the money invariants through the services' own APIs.
//!
//! Running:
//! - `make test-e2e`, i.e. `cargo build --workspace --bins --features
//!   gateway-coordinator/pause-points && cargo test -p banktransfer-e2e --
//!   --test-threads=1` (the tests start the binaries cargo built next to them, in
//!   `target/debug/`; one cluster at a time, as the budgets are timed);
//! - `E2E_DATABASE=postgres` runs every scenario on fresh PostgreSQL databases instead of
//!   SQLite files (`BANKTRANSFER_TEST_POSTGRES_URL` says where; an unreachable server is
//!   then a failure); `tests/postgres_backend.rs` runs a few scenarios on PostgreSQL in
//!   any case, skipping loudly without a server unless `REQUIRE_POSTGRES=1`;
//! - `E2E_KEEP=1` keeps every cluster's directory (configs, logs, SQLite files, and the
//!   cluster's PKI in `pki/`); a failed test always keeps its own and prints the path;
//! - every port speaks TLS: each cluster has its own PKI, and the harness calls each service
//!   as the identity the call needs ([`pki::Caller`]; user tokens for the public API);
//! - latency: `cargo build --release --bins && cargo run --release -p banktransfer-e2e
//!   --bin latency -- --count 1000 [--database postgres]`.
//!
//! Map:
//! - [`service`]: the four services and their binary names.
//! - [`binaries`]: where cargo put the built binaries.
//! - [`accounts`]: the demo accounts every cluster opens.
//! - [`config`]: the cluster's knobs and the TOML file each service is started with.
//! - [`database`]: SQLite files, or fresh PostgreSQL databases (`E2E_DATABASE=postgres`).
//! - [`pki`]: the cluster's certificates and token key, and who the harness calls as.
//! - [`ports`]: free TCP ports.
//! - [`process`]: one child process, its log file and its signals.
//! - [`logs`]: reading a service's log: tails and waiting for a line.
//! - [`health`]: the standard gRPC health check.
//! - [`metrics`]: scraping a service's Prometheus endpoint.
//! - [`otlp`]: an OTLP trace receiver in the test, for the services' exported spans.
//! - [`clients`]: gRPC clients over TLS, deadlines, and the transfer helpers tests use
//!   (with a bearer token for the request's user).
//! - [`cluster`]: [`cluster::Cluster`], the four services together.
//! - [`invariants`]: the money invariants, checked once the system is at rest.
//! - [`scenarios`]: scenarios run on more than one back end.
//! - [`attack`]: what the attack tests check after a refused call (the status, no database
//!   text, unchanged books, nothing recorded in the logs).

pub mod accounts;
pub mod attack;
pub mod binaries;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod database;
pub mod health;
pub mod invariants;
pub mod logs;
pub mod metrics;
pub mod otlp;
pub mod pki;
pub mod ports;
pub mod process;
pub mod scenarios;
pub mod service;

pub use accounts::{AccountSpec, Side};
pub use clients::{Auth, TransferKey, TransferRequest, Transfers};
pub use cluster::Cluster;
pub use config::{ClusterConfig, PausePoint};
pub use database::DatabaseChoice;
pub use pki::{Caller, ClusterPki};
pub use service::Service;
