//! The coordinator's library: everything the gateway (which coordinates live transfers)
//! and the reconciler (which finishes the ones a crash or an outage left behind) share.
//! Neither service depends on the other; both depend on this.
//!
//! Map:
//! - [`config`]: [`config::CommonSettings`], the keys both services read (listen address,
//!   the transfer log's URL, the participants' URLs, `[server]`, `[database]`) and their
//!   one validation.
//! - [`store`]: the durable transfer log ([`store::TransferStore`], over SQL in
//!   [`store::SqlTransferStore`]; in memory for the simulation in
//!   `testkit::memory_transfer_store`); every write a single guarded statement. [`store_status`] maps its errors to gRPC.
//! - [`participants`]: the external institution and the balance store
//!   ([`participants::Participants`], over gRPC in [`participants::GrpcParticipants`]).
//! - [`driver`]: runs `banktransfer_protocol::transfer::TransferMachine` against the store
//!   and the participants, waking it at the deadlines it asks for.
//! - [`pause`]: TEST-ONLY pause points for the crash tests.
//! - [`connect`]: opens the transfer log and the participant clients from the settings,
//!   as [`Backends`], what both services run over.

pub mod config;
pub mod driver;
pub mod participants;
pub mod pause;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use service_kit::clock::{SharedClock, SystemClock};

use crate::config::CommonSettings;
use crate::participants::GrpcParticipants;
use crate::store::{SqlTransferStore, StoreError};

/// What a coordinating service (the gateway, the reconciler) runs over: the transfer
/// log, the participants and the clock. [`connect`] opens the real ones; tests and the
/// simulation inject their own.
pub struct Backends<S, P> {
    pub store: Arc<S>,
    pub participants: Arc<P>,
    pub clock: SharedClock,
}

/// Checks the shared settings, then opens the transfer log (migrating it) and the clients
/// of both participants (TLS with `tls`: this service's own certificate), on the system
/// clock: what both services do at start-up. The database URL is not echoed: it may carry
/// a password.
pub async fn connect(
    settings: &CommonSettings,
    tls: &service_kit::tls::TlsSection,
) -> anyhow::Result<Backends<SqlTransferStore, GrpcParticipants>> {
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let store = SqlTransferStore::open(&settings.database_url, settings.database.pool_settings())
        .await
        .context("opening the transfer log (database_url)")?;
    let tls = tls.required_client_config()?;
    let participants = GrpcParticipants::connect(
        &settings.external_url,
        &settings.balance_store_url,
        settings.connect_timeout(),
        tls,
    )
    .context("participant URLs")?;
    Ok(Backends {
        store: Arc::new(store),
        participants: Arc::new(participants),
        clock: Arc::new(SystemClock),
    })
}

/// A store failure as an API reports it: unreachable or busy is UNAVAILABLE (retry),
/// anything else INTERNAL.
pub fn store_status(err: &StoreError) -> tonic::Status {
    match err {
        StoreError::Unavailable(_) => tonic::Status::unavailable(err.to_string()),
        StoreError::Failed(_) | StoreError::Corrupt(_) => tonic::Status::internal(err.to_string()),
    }
}
