//! The internal balance store: our ledger, the source of truth for users' balances. On
//! Reserve it screens the transfer (antifraud, limits, rate limit) and records a pending
//! credit; Confirm makes the credit available; Cancel drops it (the credit side of the
//! shared participant protocol).
//!
//! Map:
//! - [`config`]: [`Settings`] (the common participant keys plus `[rules]`).
//! - [`rules`]: the rules as a pure function of the rules, the terms and the counts.
//! - [`screening`]: counts in the reserve's own transaction, then applies the rules.
//! - the gRPC services, `ReservationService` and this service's own
//!   `BalanceStoreService`, are the `participant` library's (`participant::grpc::routes`).
//! - [`run`]: connect, migrate, open the configured accounts, serve until shutdown.

pub mod config;
pub mod rules;
pub mod screening;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use banktransfer_protocol::reservation::Side;
use participant::ReservationStore;
use participant::grpc::{NoGate, Participant};
use service_kit::clock::{SharedClock, SystemClock};
use service_kit::db;

pub use config::Settings;

/// The gRPC services this binary serves, for health and reflection.
pub const SERVICE_NAMES: &[&str] = &[
    "banktransfer.reservation.v1.ReservationService",
    "banktransfer.balance_store.v1.BalanceStoreService",
];

/// Runs the balance store on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(settings, Arc::new(SystemClock), listener, shutdown).await
}

/// As [`run`], with the clock given (tests move it across rate limit and daily windows).
pub async fn run_with_clock(
    settings: Settings,
    clock: SharedClock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.validate()?;
    let db = db::connect(&settings.database_url, settings.database.pool_settings())
        .await
        .context("opening the database")?;
    db::migrate(&db, &participant::MIGRATIONS)
        .await
        .context("migrating the database")?;
    let screening = screening::LedgerScreening::new(settings.rules.clone());
    let store = ReservationStore::new(db.clone(), Side::Credit, screening);
    let participant = Participant::new(store, clock);
    participant::seed::open_accounts(participant.book(), &settings.accounts, participant.now_ms())
        .await?;

    let routes = participant::grpc::routes(participant, Side::Credit, NoGate);
    let served = service_kit::server::serve(
        listener,
        routes,
        SERVICE_NAMES,
        settings.server.server_settings(),
        shutdown,
    )
    .await;
    db.pool.close().await;
    served.context("serving gRPC")
}
