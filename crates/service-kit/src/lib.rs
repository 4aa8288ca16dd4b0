//! What every BankTransfer service shares.
//!
//! Map:
//! - [`config`]: typed configuration from a TOML file plus `BANKTRANSFER__*` environment
//!   overrides.
//! - [`telemetry`]: structured logs through `tracing` (pretty or JSON).
//! - [`traces`]: spans exported over OTLP when `OTEL_*` names a collector; the W3C trace
//!   context on every gRPC hop (client interceptor, server layer).
//! - [`db`]: one connection pool over SQLite (embedded default) or PostgreSQL, chosen by the
//!   URL, with embedded migrations per back end; SQLite's WAL checkpointed by a task, off
//!   the write path ([`db::checkpoint`]).
//! - [`group_commit`]: many callers' writes in one transaction and one commit.
//! - [`server`]: the gRPC server shell: `[server]` (the same in every service), TLS, health
//!   service, reflection switch, message / HTTP/2 / concurrency limits, request timeout,
//!   graceful shutdown.
//! - [`client`]: TLS channels to other services, with connect timeouts and message limits.
//! - [`shutdown`]: SIGTERM / Ctrl-C as a future, and a signal for background loops.
//! - [`clock`]: the only place that reads the wall clock.
//! - [`identity`]: the SPIFFE ids of the services and of operators, and the user-token
//!   issuer and audience defaults (`banktransfer-pki` issues what these name).
//! - [`tls`]: TLS from the `[tls]` file paths (server and client configs for tonic/rustls),
//!   and the caller's SPIFFE id from its verified client certificate.
//! - [`acceptor`]: the servers' TLS acceptor: TLS 1.3 only, bounded handshakes, files
//!   reloaded on change.
//! - [`authz`]: per-method allowlists of SPIFFE ids (`unauthenticated` without a client
//!   certificate, `permission_denied` for another identity).
//! - [`metrics`]: `[metrics]`, the Prometheus endpoint, the per-RPC layer and the helpers
//!   the services record their own metrics with (names per `deploy/monitoring/README.md`).
//! - [`jwt`]: the user bearer-token validator (EdDSA JWT) for the gateway's public methods.

pub mod acceptor;
pub mod authz;
pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod group_commit;
pub mod identity;
pub mod jwt;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod traces;
