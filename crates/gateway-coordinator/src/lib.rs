//! The gateway: BankTransfer's public TransferService, and the coordinator of every
//! transfer. Its library also holds what the reconciler reuses: the transfer log and
//! the protocol driver.
//!
//! Map:
//! - [`config`]: `Settings` (every key has a default) and the `[server]`/`[database]`
//!   sections the reconciler shares.
//! - [`store`]: the coordinator's durable transfer log ([`store::TransferStore`], over SQL
//!   in [`store::SqlTransferStore`], in memory for simulation in
//!   [`store::MemoryTransferStore`]); every write a single guarded statement.
//! - [`participants`]: the external institution and the balance store
//!   ([`participants::Participants`], over gRPC in [`participants::GrpcParticipants`]).
//! - [`driver`]: runs `banktransfer_protocol::transfer::TransferMachine` against the store
//!   and the participants, with deadlines.
//! - [`approve`]: ApproveTransfer's flow: intent, drive, replays and takeovers; where
//!   transfer ids come from ([`approve::TransferIds`]).
//! - [`service`]: the gRPC TransferService; [`convert`] is its protobuf boundary and
//!   [`grpc_timeout`] reads the client's deadline.
//! - [`fault`]: TEST-ONLY pause points for the crash tests.
//! - [`testing`]: scripted participants for tests.

pub mod approve;
pub mod config;
pub mod convert;
pub mod driver;
pub mod fault;
pub mod grpc_timeout;
pub mod participants;
pub mod service;
pub mod store;
pub mod testing;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use banktransfer_proto::gateway::v1::transfer_service_server::TransferServiceServer;
use service_kit::clock::{SharedClock, SystemClock};
use tokio::net::TcpListener;

pub use config::Settings;

use crate::approve::{Approver, TransferIds, UuidV7Ids};
use crate::driver::Driver;
use crate::participants::{GrpcParticipants, Participants};
use crate::service::TransferApi;
use crate::store::{SqlTransferStore, StoreError, TransferStore};

/// The gRPC service name, for health checks and reflection.
pub const SERVICE_NAME: &str = "banktransfer.gateway.v1.TransferService";

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let store = SqlTransferStore::open(&settings.database_url, settings.database.pool_settings())
        .await
        .with_context(|| format!("opening the transfer log at {}", settings.database_url))?;
    let participants = GrpcParticipants::connect(
        &settings.external_url,
        &settings.ledger_url,
        settings.connect_timeout(),
    )
    .context("participant URLs")?;
    serve(
        &settings,
        Arc::new(store),
        Arc::new(participants),
        Arc::new(SystemClock),
        listener,
        shutdown,
    )
    .await
}

/// Runs the gateway over the given store, participants and clock (tests inject theirs).
pub async fn serve<S: TransferStore, P: Participants>(
    settings: &Settings,
    store: Arc<S>,
    participants: Arc<P>,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let routes = routes(settings, store, participants, clock, Arc::new(UuidV7Ids))?;
    service_kit::server::serve(
        listener,
        routes,
        &[SERVICE_NAME],
        settings.server.server_settings(),
        shutdown,
    )
    .await?;
    Ok(())
}

/// The TransferService over the given store, participants, clock and transfer ids, ready
/// to be served (by [`serve`], or by the deterministic simulation on its own network).
pub fn routes<S: TransferStore, P: Participants>(
    settings: &Settings,
    store: Arc<S>,
    participants: Arc<P>,
    clock: SharedClock,
    ids: Arc<dyn TransferIds>,
) -> anyhow::Result<tonic::service::Routes> {
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let faults = settings.fault_points().map_err(anyhow::Error::msg)?;
    if !faults.is_off() {
        tracing::warn!(?faults, "TEST-ONLY fault points are enabled");
    }
    let policy = settings.budget.policy();
    let driver = Driver::new(Arc::clone(&store), participants, Arc::clone(&clock), faults);
    let approver =
        Approver::new(Arc::clone(&store), driver, Arc::clone(&clock), policy).with_ids(ids);
    let api = TransferApi::new(approver, store, clock, policy, settings.max_in_flight);
    Ok(tonic::service::Routes::new(TransferServiceServer::new(api)))
}

/// A store failure as the API reports it: unreachable or busy is UNAVAILABLE (retry),
/// anything else INTERNAL.
pub fn store_status(err: &StoreError) -> tonic::Status {
    match err {
        StoreError::Unavailable(_) => tonic::Status::unavailable(err.to_string()),
        StoreError::Failed(_) | StoreError::Corrupt(_) => tonic::Status::internal(err.to_string()),
    }
}
