//! The reconciler: the coordinator's recovery half. It finds transfers that no live
//! request is finishing (undecided past their time, decided but not acknowledged by both
//! participants) and finishes them with the same driver as the gateway (the `coordinator`
//! library's); it also audits the
//! coordinator's log against both participants.
//!
//! Map:
//! - [`config`]: `Settings` (every key has a default).
//! - [`pass`]: one pass: claim under a lease, `reconcile::takeover`, drive, reschedule.
//! - [`worker`]: the pass schedule and graceful stop.
//! - [`audit`]: the protocol's money-audit rules: recent transfers against the
//!   participants' reservations, then [`books`]: both participants' whole books (every
//!   reservation, every account) against the log and their opening balances.
//! - [`service`]: the gRPC operator API (RunPass, Audit), served only to operator
//!   certificates (`spiffe://banktransfer/operator`); [`findings`]: the books rule's
//!   findings in its reply.
//! - [`jitter`], [`replica`]: backoff jitter and this replica's lease name.

pub mod audit;
pub mod books;
pub mod config;
pub mod findings;
pub mod jitter;
pub mod pass;
pub mod replica;
pub mod service;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banktransfer_api::reconciler::v1::reconciler_service_server::ReconcilerServiceServer;
use coordinator::Backends;
use coordinator::participants::Participants;
use coordinator::store::TransferStore;
use service_kit::authz::require_identities;
use service_kit::tls::OPERATOR_IDENTITIES;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

pub use config::Settings;

use crate::books::BookReading;
use crate::jitter::Jitter;
use crate::pass::{PassOptions, Reconciler};
use crate::service::ReconcilerApi;

/// The gRPC service name, for health checks and reflection.
pub const SERVICE_NAME: &str = "banktransfer.reconciler.v1.ReconcilerService";

/// Runs the reconciler (its pass schedule and its API on `listener`) until `shutdown`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let backends = coordinator::connect(&settings.common, &settings.tls).await?;
    serve(&settings, backends, listener, shutdown).await
}

/// The pass options `settings` describe, with this replica's id resolved.
pub fn pass_options(settings: &Settings) -> PassOptions {
    PassOptions {
        replica_id: replica::replica_id(&settings.replica_id),
        batch_size: settings.batch_size,
        lease_ms: settings.lease_ms,
        call_timeout_ms: settings.call_timeout_ms,
        attempts_alert: settings.attempts_alert,
        retry: settings.retry.policy(),
        budget: settings.common.budget.policy(),
    }
}

/// Runs the reconciler over the given store, participants and clock (tests inject
/// theirs).
pub async fn serve<S: TransferStore, P: Participants>(
    settings: &Settings,
    backends: Backends<S, P>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server_settings = settings.common.server.server_settings(&settings.tls)?;
    let (trigger, stop) = service_kit::shutdown::channel();
    let (routes, reconciler) = routes(settings, backends, Jitter::from_entropy(), stop.clone())?;
    let worker = tokio::spawn(worker::run(reconciler, stop, settings.pass_interval()));
    // The trigger lives in the server's shutdown future: the signal stops the schedule
    // as the server starts draining, and a server that fails drops it, which stops the
    // schedule too.
    let served = service_kit::server::serve(
        listener,
        routes,
        &[SERVICE_NAME],
        server_settings,
        async move {
            shutdown.await;
            trigger.trigger();
        },
    )
    .await;
    worker.await.context("the pass schedule panicked")?;
    served?;
    Ok(())
}

/// The reconciler's parts over the given backends and jitter: its
/// operator API, ready to be served, and the [`Reconciler`] whose schedule
/// ([`worker::run`]) the caller starts. Passes stop once `stop` is triggered. [`serve`]
/// runs them on a TCP listener; the deterministic simulation on its own network.
pub fn routes<S: TransferStore, P: Participants>(
    settings: &Settings,
    backends: Backends<S, P>,
    jitter: Jitter,
    stop: service_kit::shutdown::Shutdown,
) -> anyhow::Result<(tonic::service::Routes, Arc<Reconciler<S, P>>)> {
    let Backends {
        store,
        participants,
        clock,
    } = backends;
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let reconciler = Arc::new(
        Reconciler::new(
            Arc::clone(&store),
            Arc::clone(&participants),
            clock,
            pass_options(settings),
            jitter,
        )
        .with_shutdown(stop),
    );
    let book_reading = BookReading {
        page_size: settings.audit_page_size,
        pages_max: settings.audit_pages_max,
        call_timeout: Duration::from_millis(settings.call_timeout_ms),
    };
    let api = ReconcilerApi::new(
        Arc::clone(&reconciler),
        store,
        participants,
        settings.audit_limit_default,
        book_reading,
    );
    // Every method is an operator's: RunPass moves money (it finishes or aborts
    // transfers) and Audit reads every account.
    let server = service_kit::limit!(ReconcilerServiceServer::new(api));
    let routes = tonic::service::Routes::new(InterceptedService::new(
        server,
        require_identities(OPERATOR_IDENTITIES),
    ));
    Ok((routes, reconciler))
}
