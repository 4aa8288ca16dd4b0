//! End-to-end harness for BankTransfer: starts the four real binaries as child processes
//! on free ports with fresh databases, drives them over gRPC, kills and restarts them, and
//! checks the money invariants through the services' own APIs.
//!
//! Map:
//! - [`service`]: the four services and their binary names.
//! - [`binaries`]: where cargo put the built binaries.
//! - [`accounts`]: the demo accounts every cluster opens.
//! - [`config`]: the cluster's knobs and the TOML file each service is started with.
//! - [`database`]: SQLite files, or fresh PostgreSQL databases (`E2E_DATABASE=postgres`).
//! - [`ports`]: free TCP ports.
//! - [`process`]: one child process, its log file and its signals.
//! - [`logs`]: reading a service's log: tails and waiting for a line.
//! - [`health`]: the standard gRPC health check.
//! - [`clients`]: gRPC clients, deadlines, and the transfer helpers tests use.
//! - [`cluster`]: [`cluster::Cluster`], the four services together.
//! - [`invariants`]: the money invariants, checked once the system is at rest.
//! - [`scenarios`]: scenarios run on more than one back end.

pub mod accounts;
pub mod binaries;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod database;
pub mod health;
pub mod invariants;
pub mod logs;
pub mod ports;
pub mod process;
pub mod scenarios;
pub mod service;

pub use accounts::{AccountSpec, Side};
pub use clients::{TransferKey, TransferRequest, Transfers};
pub use cluster::Cluster;
pub use config::{ClusterConfig, PausePoint};
pub use database::DatabaseChoice;
pub use service::Service;
