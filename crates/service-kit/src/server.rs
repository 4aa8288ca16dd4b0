//! The gRPC server shell every service runs in: its own services plus the standard health
//! service and server reflection (so `grpcurl` works without proto files), a server-side
//! request timeout, a per-connection concurrency bound, and graceful shutdown with a
//! bounded grace period.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;

const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Upper bound on any request, whatever deadline the client sent.
    pub request_timeout: Duration,
    /// Requests in flight per connection; more wait (bounded queue per connection).
    pub concurrency_limit_per_connection: usize,
    /// After the shutdown signal, in-flight requests get this long before the process
    /// drops them.
    pub shutdown_grace: Duration,
    /// HTTP/2 streams a peer may reset before they are processed, before the server
    /// answers GOAWAY (the rapid-reset defence). h2's default, 20, is far too low for our
    /// callers: every call whose deadline passes is reset, and a burst of timeouts from
    /// the gateway would cost it the whole connection. Still bounded.
    pub pending_reset_streams_max: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            request_timeout: Duration::from_secs(30),
            concurrency_limit_per_connection: 256,
            shutdown_grace: Duration::from_secs(5),
            pending_reset_streams_max: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains for at most
/// `settings.shutdown_grace`. `service_names` are the fully qualified gRPC service names
/// in `routes`, reported SERVING by the health service and listed by reflection.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    service_names: &[&str],
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local_addr = listener.local_addr().ok();
    tracing::info!(?local_addr, services = ?service_names, "gRPC server listening");
    serve_incoming(
        TcpListenerStream::new(listener),
        routes,
        service_names,
        settings,
        shutdown,
    )
    .await
}

/// As [`serve`], over any stream of accepted connections (the deterministic simulation
/// accepts them from its simulated network).
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    routes: Routes,
    service_names: &[&str],
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    // Both reflection versions: grpcurl up to 1.8.x (the PyPI wrapper ships 1.8.6)
    // speaks only v1alpha.
    // The health service is listed too, so `grpcurl ... grpc.health.v1.Health/Check` works.
    let reflection = || {
        service_names.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(banktransfer_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(HEALTH_SERVICE_NAME),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let reflection_v1 = reflection().build_v1()?;

    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    let reporter = health_reporter.clone();
    let on_signal = async move {
        shutdown.await;
        // Tell load balancers first, then stop accepting.
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = started_tx.send(());
    };

    let server = tonic::transport::Server::builder()
        .timeout(settings.request_timeout)
        .concurrency_limit_per_connection(settings.concurrency_limit_per_connection)
        .tcp_nodelay(true)
        .http2_max_pending_accept_reset_streams(Some(settings.pending_reset_streams_max))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, on_signal);
    tokio::pin!(server);
    let grace = settings.shutdown_grace;
    let grace_over = async move {
        if started_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result?,
        () = grace_over => tracing::warn!(?grace, "shutdown grace elapsed; dropping remaining requests"),
    }
    tracing::info!("gRPC server stopped");
    Ok(())
}
