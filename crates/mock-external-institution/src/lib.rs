//! The mock external institution: the other bank, where users' funds are. It holds funds
//! on Reserve, moves them out on Confirm and releases them on Cancel (the debit side of
//! the shared participant protocol), and lets tests inject faults into those calls.
//!
//! Map:
//! - [`config`]: [`Settings`] (the common participant keys).
//! - [`fault_gate`]: the injected faults as the call gate of the shared
//!   `ReservationService` (the `participant` library serves it, and this service's own
//!   `ExternalInstitutionService`), applied to reserve, confirm and cancel.
//! - [`faults`]: the bounded fault list and which fault a call meets (pure).
//! - [`fault_injection`]: the FaultInjectionService that edits that list.
//! - [`run`]: connect, migrate, open the configured accounts, serve until shutdown.

pub mod config;
pub mod fault_gate;
pub mod fault_injection;
pub mod faults;

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use banktransfer_api::external::v1::fault_injection_service_server::FaultInjectionServiceServer;
use banktransfer_protocol::reservation::Side;
use participant::grpc::Participant;
use participant::{NoScreening, ReservationStore};
use service_kit::clock::{SharedClock, SystemClock};
use service_kit::db;

pub use config::Settings;

/// The gRPC services this binary serves, for health and reflection.
pub const SERVICE_NAMES: &[&str] = &[
    "banktransfer.reservation.v1.ReservationService",
    "banktransfer.external.v1.ExternalInstitutionService",
    "banktransfer.external.v1.FaultInjectionService",
];

/// Runs the institution on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(settings, Arc::new(SystemClock), listener, shutdown).await
}

/// As [`run`], with the clock given (tests and simulation).
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
    let store = ReservationStore::new(db.clone(), Side::Debit, NoScreening);
    let participant = Participant::new(store, clock);
    participant::seed::open_accounts(participant.book(), &settings.accounts, participant.now_ms())
        .await?;

    let faults = Arc::new(Mutex::new(faults::FaultList::default()));
    // Lost replies wait for this, so that shutdown does not wait out their hold.
    let (stopping, stop) = service_kit::shutdown::channel();
    let gate = fault_gate::FaultGate::new(Arc::clone(&faults), stop);
    let routes = participant::grpc::routes(participant, Side::Debit, gate).add_service(
        FaultInjectionServiceServer::new(fault_injection::FaultInjectionService::new(faults)),
    );
    let served = service_kit::server::serve(
        listener,
        routes,
        SERVICE_NAMES,
        settings.server.server_settings(),
        async move {
            shutdown.await;
            stopping.trigger();
        },
    )
    .await;
    db.pool.close().await;
    served.context("serving gRPC")
}
