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
//!   `testkit::memory_transfer_store`); every write a single guarded statement. [`store_status`] maps its errors to gRPC,
//!   without the database's text.
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
    // Before the pool opens, so that its sampler starts.
    service_kit::metrics::install(&settings.metrics).context("starting the metrics endpoint")?;
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

/// A store failure as an API reports it, never with the database's own text (which can
/// name hosts, tables and values): unreachable or busy is UNAVAILABLE, "the transfer store
/// is unavailable; `retry`"; anything else is INTERNAL, "internal error; reference R",
/// where R is `transfer_id` when the call was about one, else a fresh id. The detail is
/// logged here, with the transfer id or the reference, for operators to find.
pub fn store_status(err: &StoreError, transfer_id: Option<&str>, retry: &str) -> tonic::Status {
    match err {
        StoreError::Unavailable(_) => {
            tracing::warn!(transfer_id, error = ?err, "transfer store unavailable");
            tonic::Status::unavailable(format!("the transfer store is unavailable; {retry}"))
        }
        StoreError::Failed(_) | StoreError::Corrupt(_) => {
            let reference =
                transfer_id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
            tracing::error!(reference, error = ?err, "transfer store error");
            tonic::Status::internal(format!("internal error; reference {reference}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_reach_clients_without_the_database_text() {
        let detail = "connection to server at \"db.internal\" (10.1.2.3), port 5432 failed";
        let down = store_status(
            &StoreError::Unavailable(detail.into()),
            Some("t-1"),
            "retry with the same idempotency key",
        );
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert_eq!(
            down.message(),
            "the transfer store is unavailable; retry with the same idempotency key"
        );
        let refused = store_status(
            &StoreError::Failed("invalid byte sequence for encoding \"UTF8\": 0x00".into()),
            Some("t-1"),
            "retry later",
        );
        assert_eq!(refused.code(), tonic::Code::Internal);
        assert_eq!(refused.message(), "internal error; reference t-1");
        let corrupt = store_status(&StoreError::Corrupt(detail.into()), None, "retry later");
        assert_eq!(corrupt.code(), tonic::Code::Internal);
        let reference = corrupt
            .message()
            .strip_prefix("internal error; reference ")
            .unwrap_or_else(|| panic!("{corrupt:?}"));
        assert!(uuid::Uuid::parse_str(reference).is_ok(), "{corrupt:?}");
    }
}
