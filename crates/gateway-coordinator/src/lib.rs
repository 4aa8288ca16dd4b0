//! The gateway: BankTransfer's public TransferService, which coordinates every live
//! transfer. The transfer log, the protocol driver and the participants client it drives
//! are the `coordinator` library's, shared with the reconciler; this crate holds only the
//! public API.
//!
//! Map:
//! - [`config`]: `Settings` (every key has a default; the shared keys are
//!   `coordinator::config::CommonSettings`).
//! - [`approve`]: ApproveTransfer's flow: intent, drive, replays and takeovers; where
//!   transfer ids come from ([`approve::TransferIds`]).
//! - [`service`]: the gRPC TransferService; [`convert`] is its protobuf boundary and
//!   [`grpc_timeout`] reads the client's deadline.
//! - [`admission`]: what ApproveTransfer refuses at once (RESOURCE_EXHAUSTED with a
//!   `grpc-retry-pushback-ms` hint, before the intent is written) so that what it admits
//!   is served within its budget: a per-user in-flight cap, then a deadline check against
//!   the expected service time and an adaptive concurrency limit learnt from drive
//!   latencies (the pure rules: `banktransfer_protocol::admission`). [`live`]: the drives
//!   running in this process, whose replays wait for them in memory instead of polling
//!   the transfer log.
//! - [`metrics`]: the gateway's own metrics: transfers by outcome, admission refusals.

pub mod admission;
pub mod approve;
pub mod config;
pub mod convert;
pub mod grpc_timeout;
pub mod live;
pub mod metrics;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_server::TransferServiceServer;
use tokio::net::TcpListener;

pub use config::Settings;

use crate::approve::{Approver, TransferIds, UuidV7Ids};
use crate::service::TransferApi;
use coordinator::Backends;
use coordinator::driver::Driver;
use coordinator::participants::Participants;
use coordinator::store::TransferStore;

/// The gRPC service name, for health checks and reflection.
pub const SERVICE_NAME: &str = "banktransfer.gateway.v1.TransferService";

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let backends = coordinator::connect(&settings.common, &settings.tls).await?;
    serve(&settings, backends, listener, shutdown).await
}

/// Runs the gateway over the given store, participants and clock (tests inject theirs).
pub async fn serve<S: TransferStore, P: Participants>(
    settings: &Settings,
    backends: Backends<S, P>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut server_settings = settings.common.server.server_settings(&settings.tls)?;
    // The public endpoint: a transfer's trace starts here, whatever the client sends.
    server_settings.trace_context = service_kit::server::TraceContext::NewTrace;
    let routes = routes(settings, backends, Arc::new(UuidV7Ids))?;
    service_kit::server::serve(listener, routes, &[SERVICE_NAME], server_settings, shutdown)
        .await?;
    Ok(())
}

/// The TransferService over the given backends and transfer ids, ready to be served (by
/// [`serve`], or by the deterministic simulation on its own network).
pub fn routes<S: TransferStore, P: Participants>(
    settings: &Settings,
    backends: Backends<S, P>,
    ids: Arc<dyn TransferIds>,
) -> anyhow::Result<tonic::service::Routes> {
    let Backends {
        store,
        participants,
        clock,
    } = backends;
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let pauses = coordinator::pause::PausePoints::from_env().map_err(anyhow::Error::msg)?;
    if !pauses.is_off() {
        tracing::warn!(?pauses, "TEST-ONLY pause points are enabled");
    }
    let policy = settings.common.budget.policy();
    let driver = Driver::new(Arc::clone(&store), participants, Arc::clone(&clock), pauses);
    let approver = Approver::new(Arc::clone(&store), driver, Arc::clone(&clock), policy)
        .with_ids(ids)
        .with_live_drives_max(settings.admission.limit_max as usize);
    let tokens = settings
        .auth
        .validator(Arc::clone(&clock))?
        .ok_or_else(|| anyhow::anyhow!("auth.verify_key_path is required"))?;
    let api = TransferApi::new(
        approver,
        Arc::new(tokens),
        store,
        clock,
        policy,
        settings.in_flight_max,
        settings.amount_minor_max,
    )
    .with_admission(&settings.admission);
    Ok(tonic::service::Routes::new(service_kit::limit!(
        TransferServiceServer::new(api)
    )))
}
