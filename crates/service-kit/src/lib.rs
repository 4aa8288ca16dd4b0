//! What every BankTransfer service shares.
//!
//! Map:
//! - [`config`]: typed configuration from a TOML file plus `BANKTRANSFER__*` environment
//!   overrides.
//! - [`telemetry`]: structured logs through `tracing` (pretty or JSON).
//! - [`db`]: one connection pool over SQLite (embedded default) or PostgreSQL, chosen by the
//!   URL, with embedded migrations per back end.
//! - [`server`]: the gRPC server shell: health service, reflection, request timeout,
//!   graceful shutdown.
//! - [`client`]: gRPC channels to other services, with connect timeouts.
//! - [`shutdown`]: SIGTERM / Ctrl-C as a future, and a signal for background loops.
//! - [`clock`]: the only place that reads the wall clock.

pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod server;
pub mod shutdown;
pub mod telemetry;
