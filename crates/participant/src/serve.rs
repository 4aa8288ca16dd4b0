//! A participant service from start to stop, the same for both: connect to the database,
//! migrate, open the configured accounts, serve `ReservationService` and the side's own
//! account service (plus any service of the participant's own) until shutdown.

use std::future::Future;

use anyhow::Context;
use banktransfer_protocol::reservation::Side;
use service_kit::clock::SharedClock;
use service_kit::db;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::{CommonSettings, Defaults};
use crate::grpc::{CallGate, Participant};
use crate::screening::Screening;
use crate::store::ReservationStore;

/// A participant binary's first steps: logs (and traces, when configured) in
/// `settings.log_format` under `service`'s name, then the listener on
/// `settings.listen_addr`. The binary flushes the traces when it stops.
pub async fn listen<D: Defaults>(
    settings: &CommonSettings<D>,
    service: &'static str,
) -> anyhow::Result<(TcpListener, Option<service_kit::traces::Tracing>)> {
    let traces = service_kit::telemetry::init(service, &settings.log_format);
    let listener = TcpListener::bind(&settings.listen_addr)
        .await
        .with_context(|| format!("binding listen_addr {}", settings.listen_addr))?;
    Ok((listener, traces))
}

/// What makes one participant itself.
pub struct Parts<S, G, F> {
    /// Debit: the external institution; credit: our balance store.
    pub side: Side,
    /// Runs inside every new reserve's transaction.
    pub screening: S,
    /// Stands before every reserve, confirm and cancel.
    pub gate: G,
    /// Adds the participant's own services to the shared routes.
    pub add_services: F,
    /// Every service served, for health and reflection.
    pub service_names: &'static [&'static str],
}

/// Runs the participant on `listener` until `shutdown` resolves. `settings` are checked
/// first; a participant with keys of its own checks those before calling.
pub async fn run<D, S, G, F>(
    settings: &CommonSettings<D>,
    parts: Parts<S, G, F>,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    D: Defaults,
    S: Screening + Clone,
    G: CallGate,
    F: FnOnce(Routes) -> Routes,
{
    settings.validate()?;
    let server_settings = settings.server.server_settings(&settings.tls)?;
    // Before the pool opens, so that its sampler starts.
    service_kit::metrics::install(&settings.metrics).context("starting the metrics endpoint")?;
    let db = db::connect(&settings.database_url, settings.database.pool_settings())
        .await
        .context("opening the database")?;
    db::migrate(&db, &crate::MIGRATIONS)
        .await
        .context("migrating the database")?;
    let store = ReservationStore::new(db.clone(), parts.side, parts.screening);
    let participant = Participant::new(store, clock);
    crate::seed::open_accounts(participant.book(), &settings.accounts, participant.now_ms())
        .await?;

    let shared = crate::grpc::routes(participant, parts.side, parts.gate);
    let served = service_kit::server::serve(
        listener,
        (parts.add_services)(shared),
        parts.service_names,
        server_settings,
        shutdown,
    )
    .await;
    db.pool.close().await;
    served.context("serving gRPC")
}
