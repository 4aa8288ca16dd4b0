//! The gRPC server shell every service runs in: its own services plus the standard health
//! service and (when switched on) server reflection, TLS with the caller's identity, explicit
//! HTTP/2 and message limits, a service-wide concurrency limit, a server-side request
//! timeout, and graceful shutdown with a bounded grace period.
//!
//! Limits, and why each is what it is:
//! - Messages: [`MESSAGE_BYTES_MAX`] (64 KiB) each way. Our largest request is a few
//!   hundred bytes; tonic's default of 4 MiB would let one call make the server buffer and
//!   decode 4 MiB.
//! - HTTP/2: at most `streams_per_connection_max` concurrent streams per connection (the
//!   same bound queues requests per connection), headers at most 16 KiB, keep-alive pings so
//!   a dead peer is dropped, and a bound on streams a peer may reset before they are
//!   processed (the rapid-reset defence).
//! - Service-wide: at most `in_flight_max` requests being handled; beyond it a request is
//!   refused at once with RESOURCE_EXHAUSTED (load shedding), never queued without bound.
//!   The gateway adds its own, tighter admission control on ApproveTransfer.
//!
//! Probes: every service port speaks TLS only, and kubelet's native gRPC probe cannot
//! speak TLS. With `health_listen_addr` set, a second, plaintext listener serves the
//! standard health service and nothing else (same statuses, NOT_SERVING from the moment
//! shutdown starts), for probes only; it answers no other method, so it exposes nothing
//! the health service does not already tell.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;

use crate::config::ConfigError;
use crate::metrics::grpc::GrpcMetricsLayer;
use crate::tls::{PeerIdentity, TlsError, TlsSection};

const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";
const REFLECTION_SERVICE_NAMES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Probe calls handled at once on the health-only listener; more are refused at once. A
/// kubelet sends three probes per period per container: a handful is plenty.
const HEALTH_IN_FLIGHT_MAX: usize = 16;
/// Upper bound on one probe call on the health-only listener (kubelet's own timeout is
/// the probe's `timeoutSeconds`, one second by default).
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest message any BankTransfer server decodes or encodes, and any client sends or
/// accepts. Requests are a few hundred bytes; the limit leaves room for a page of a listing.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// The largest header block a peer may send (the bearer token is the biggest header).
const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;

/// `[server]`: the same table in every service's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ServerSection {
    /// Upper bound on any request, whatever deadline the client sent.
    pub request_timeout_ms: u64,
    /// After SIGTERM, in-flight requests get this long before the process drops them.
    pub shutdown_grace_ms: u64,
    /// Requests being handled at once by this process; more are refused with
    /// RESOURCE_EXHAUSTED at once.
    pub in_flight_max: usize,
    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub streams_per_connection_max: u32,
    /// HTTP/2 streams a peer may reset before they are processed, before the server answers
    /// GOAWAY (the rapid-reset defence). h2's default, 20, is far too low for our callers:
    /// every call whose deadline passes is reset, and a burst of timeouts from the gateway
    /// would cost it the whole connection. Still bounded.
    pub pending_reset_streams_max: usize,
    /// HTTP/2 ping interval; a peer that does not answer within `keepalive_timeout_ms` is
    /// disconnected.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// gRPC server reflection (what lets `grpcurl` list and call methods without the proto
    /// files). On for the local demo; off in production, where it only helps an attacker
    /// map the API.
    pub reflection: bool,
    /// `HOST:PORT` of a plaintext listener serving only `grpc.health.v1.Health`, for
    /// probes that cannot speak TLS (Kubernetes' native gRPC probe); "" (the default):
    /// none.
    pub health_listen_addr: String,
    /// Tokio worker threads of this process; 0 (the default): one per processor core.
    /// Several services sharing a few cores run cheaper with 1 each: every cross-thread
    /// wake-up of a multi-threaded runtime is a futex call and often an inter-processor
    /// interrupt, and on the 2-core benchmark machine one worker per service carried
    /// about a third more transfers per second at a quarter less CPU per transfer
    /// (docs/PERFORMANCE.md). In Kubernetes, match the pod's CPU limit.
    pub worker_threads: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
            in_flight_max: 1_024,
            streams_per_connection_max: 256,
            pending_reset_streams_max: 1_024,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 5_000,
            reflection: false,
            health_listen_addr: String::new(),
            worker_threads: 0,
        }
    }
}

/// More Tokio workers than this is a typo, not a machine.
const WORKER_THREADS_MAX: usize = 256;

impl ServerSection {
    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("server.request_timeout_ms", self.request_timeout_ms),
            ("server.in_flight_max", self.in_flight_max as u64),
            (
                "server.streams_per_connection_max",
                u64::from(self.streams_per_connection_max),
            ),
            (
                "server.pending_reset_streams_max",
                self.pending_reset_streams_max as u64,
            ),
            ("server.keepalive_interval_ms", self.keepalive_interval_ms),
            ("server.keepalive_timeout_ms", self.keepalive_timeout_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be positive")));
            }
        }
        if self.worker_threads > WORKER_THREADS_MAX {
            return Err(ConfigError::Invalid(format!(
                "server.worker_threads must be at most {WORKER_THREADS_MAX} (0: one per core)"
            )));
        }
        Ok(())
    }

    /// The process's Tokio runtime, with `worker_threads` workers. Built by `main` once
    /// the configuration is read, before anything else runs.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        if self.worker_threads > WORKER_THREADS_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "server.worker_threads must be at most {WORKER_THREADS_MAX} (0: one per core)"
                ),
            ));
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if self.worker_threads > 0 {
            builder.worker_threads(self.worker_threads);
        }
        builder.enable_all().build()
    }

    /// The server shell's settings: these limits, with TLS from `tls` (required: every
    /// BankTransfer port speaks TLS).
    pub fn server_settings(&self, tls: &TlsSection) -> Result<ServerSettings, TlsError> {
        // Loaded once here so that a bad file fails the start, naming the file.
        crate::acceptor::server_config(tls)?;
        Ok(ServerSettings {
            transport: Transport::Tls(tls.clone()),
            ..self.settings_without_tls()
        })
    }

    /// These limits over plaintext, for transports that cannot carry TLS (the deterministic
    /// simulation's network); every caller is `caller`.
    pub fn settings_without_tls(&self) -> ServerSettings {
        ServerSettings {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            in_flight_max: self.in_flight_max,
            streams_per_connection_max: self.streams_per_connection_max,
            pending_reset_streams_max: self.pending_reset_streams_max,
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms),
            reflection: self.reflection,
            health_listen_addr: (!self.health_listen_addr.trim().is_empty())
                .then(|| self.health_listen_addr.trim().to_owned()),
            trace_context: TraceContext::FromCaller,
            transport: Transport::Plaintext {
                caller: PeerIdentity::Anonymous,
            },
        }
    }
}

/// How connections arrive and who the callers are.
#[derive(Clone, Debug)]
pub enum Transport {
    /// TLS 1.3 with the files of this section ([`crate::acceptor`]: reloaded when they
    /// change); the caller is the SPIFFE id of its verified client certificate, if any.
    Tls(TlsSection),
    /// No TLS. Every caller is taken to be `caller`. Only code chooses this (the simulation's
    /// network, which has no TLS, says which host's identity its callers carry); no
    /// configuration key leads here.
    Plaintext { caller: PeerIdentity },
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub in_flight_max: usize,
    pub streams_per_connection_max: u32,
    pub pending_reset_streams_max: usize,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub reflection: bool,
    /// Where [`serve`] binds the plaintext health-only listener for probes, if anywhere.
    pub health_listen_addr: Option<String>,
    /// Whether a call's `traceparent` is continued ([`crate::traces`]).
    pub trace_context: TraceContext,
    pub transport: Transport,
}

pub use crate::traces::TraceContext;

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSection::default().settings_without_tls()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("TLS is served only on a TCP listener (serve), not over other transports")]
    TlsNeedsTcp,
    #[error("binding server.health_listen_addr {addr}: {source}")]
    HealthBind {
        addr: String,
        source: std::io::Error,
    },
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
    let tls = matches!(settings.transport, Transport::Tls(_));
    let health_listener = match &settings.health_listen_addr {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::HealthBind {
                        addr: addr.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let health_addr = health_listener.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(?local_addr, ?health_addr, services = ?service_names, tls, reflection = settings.reflection, "gRPC server listening");
    let parts = Parts {
        routes,
        service_names,
        settings,
        health_listener,
    };
    match &parts.settings.transport {
        Transport::Tls(section) => {
            let incoming = crate::acceptor::incoming(listener, section)?;
            serve_connections(incoming, parts, shutdown).await
        }
        Transport::Plaintext { .. } => {
            // tonic's `tcp_nodelay` applies only to listeners it binds itself: set it on
            // every accepted socket here, or Nagle's algorithm holds back small replies.
            let incoming = TcpListenerStream::new(listener).map(|accepted| {
                accepted.inspect(|stream| {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY on an accepted connection");
                    }
                })
            });
            serve_connections(incoming, parts, shutdown).await
        }
    }
}

/// What [`serve_connections`] serves, besides its connections.
struct Parts<'a> {
    routes: Routes,
    service_names: &'a [&'a str],
    settings: ServerSettings,
    /// The plaintext health-only listener, when configured.
    health_listener: Option<TcpListener>,
}

/// As [`serve`], over any stream of accepted plaintext connections (the deterministic
/// simulation accepts them from its simulated network); `settings.transport` must be
/// [`Transport::Plaintext`].
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
    if matches!(settings.transport, Transport::Tls(_)) {
        return Err(ServeError::TlsNeedsTcp);
    }
    // No health-only listener over other transports: it is for kubelet's probes.
    let parts = Parts {
        routes,
        service_names,
        settings,
        health_listener: None,
    };
    serve_connections(incoming, parts, shutdown).await
}

/// The server itself, over connections already through TLS (or plaintext).
async fn serve_connections<I, IO, IE>(
    incoming: I,
    parts: Parts<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Parts {
        routes,
        service_names,
        settings,
        health_listener,
    } = parts;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    // Same reporter, so the same statuses; stopped (aborted on drop) once this server is.
    let _health_only = health_listener.map(|listener| {
        AbortOnDrop(tokio::spawn(serve_health_only(
            listener,
            health_service
                .clone()
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        )))
    });
    let mut routes = routes.add_service(
        health_service
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
    );
    if settings.reflection {
        // Both reflection versions: grpcurl up to 1.8.x (the PyPI wrapper ships 1.8.6)
        // speaks only v1alpha. The health service is listed too, so
        // `grpcurl ... grpc.health.v1.Health/Check` works.
        let reflection = || {
            service_names.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(banktransfer_api::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .with_service_name(HEALTH_SERVICE_NAME),
                |builder, name| builder.with_service_name(*name),
            )
        };
        routes = routes
            .add_service(
                reflection()
                    .build_v1()?
                    .max_decoding_message_size(MESSAGE_BYTES_MAX),
            )
            .add_service(
                reflection()
                    .build_v1alpha()?
                    .max_decoding_message_size(MESSAGE_BYTES_MAX),
            );
    }
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

    let plaintext_caller = match settings.transport {
        Transport::Tls(_) => None,
        Transport::Plaintext { caller } => Some(caller),
    };
    // Every service answered here, for the per-RPC metrics' `service` label.
    let mut served: Vec<&str> = service_names.to_vec();
    served.push(HEALTH_SERVICE_NAME);
    if settings.reflection {
        served.extend(REFLECTION_SERVICE_NAMES);
    }
    let server = tonic::transport::Server::builder()
        .timeout(settings.request_timeout)
        .concurrency_limit_per_connection(settings.streams_per_connection_max as usize)
        .max_concurrent_streams(settings.streams_per_connection_max)
        .load_shed(true)
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout))
        .http2_max_header_list_size(HEADER_LIST_BYTES_MAX)
        .http2_max_pending_accept_reset_streams(Some(settings.pending_reset_streams_max))
        .tcp_nodelay(true)
        // Outside the in_flight_max limit: calls are timed from before it. (What tonic's
        // load shedding refuses never reaches a layer: see `metrics::grpc`.)
        // Outermost: the call's span (under the caller's trace) covers everything below.
        .layer(crate::traces::TraceLayer::new(settings.trace_context))
        .layer(GrpcMetricsLayer::new(served))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            settings.in_flight_max,
        ))
        .layer(CallerLayer {
            plaintext_caller: plaintext_caller.map(std::sync::Arc::new),
        })
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

/// The health-only plaintext server for probes: the health service alone, with tight
/// limits of its own. Runs until aborted.
async fn serve_health_only<H: tonic_health::pb::health_server::Health>(
    listener: TcpListener,
    health_service: tonic_health::pb::health_server::HealthServer<H>,
) {
    let result = tonic::transport::Server::builder()
        .timeout(HEALTH_REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(HEALTH_IN_FLIGHT_MAX)
        .max_concurrent_streams(HEALTH_IN_FLIGHT_MAX as u32)
        .load_shed(true)
        .http2_max_header_list_size(HEADER_LIST_BYTES_MAX)
        .tcp_nodelay(true)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            HEALTH_IN_FLIGHT_MAX,
        ))
        .add_service(health_service)
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "health-only listener failed; probes will fail");
    }
}

/// Aborts its task when dropped: the health-only server lives exactly as long as the
/// main one, whichever way that one ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Puts the caller's [`PeerIdentity`] in every request's extensions, where
/// [`crate::tls::peer_identity`] finds it: over plaintext the identity the code chose; over
/// TLS nothing (the identity is read from the verified client certificate). Extensions
/// are set only by server-side code, so a client cannot forge one.
#[derive(Clone)]
struct CallerLayer {
    plaintext_caller: Option<std::sync::Arc<PeerIdentity>>,
}

impl<S> tower::Layer<S> for CallerLayer {
    type Service = CallerService<S>;

    fn layer(&self, inner: S) -> CallerService<S> {
        CallerService {
            inner,
            plaintext_caller: self.plaintext_caller.clone(),
        }
    }
}

#[derive(Clone)]
struct CallerService<S> {
    inner: S,
    plaintext_caller: Option<std::sync::Arc<PeerIdentity>>,
}

impl<S, B> tower::Service<http::Request<B>> for CallerService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        if let Some(caller) = &self.plaintext_caller {
            request.extensions_mut().insert((**caller).clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_reflection_is_off() {
        let section = ServerSection::default();
        section.validate().unwrap();
        assert!(!section.reflection);
    }

    #[test]
    fn a_zero_limit_names_its_key() {
        let section = ServerSection {
            in_flight_max: 0,
            ..ServerSection::default()
        };
        let message = section.validate().unwrap_err().to_string();
        assert!(message.contains("server.in_flight_max"), "{message}");
    }

    #[test]
    fn the_health_only_listener_is_off_unless_an_address_is_set() {
        let off = ServerSection::default().settings_without_tls();
        assert_eq!(off.health_listen_addr, None);
        let on = ServerSection {
            health_listen_addr: " 0.0.0.0:8081 ".into(),
            ..ServerSection::default()
        }
        .settings_without_tls();
        assert_eq!(on.health_listen_addr.as_deref(), Some("0.0.0.0:8081"));
    }

    #[test]
    fn tls_settings_require_the_tls_section() {
        let error = ServerSection::default()
            .server_settings(&TlsSection::default())
            .unwrap_err();
        assert!(matches!(error, TlsError::Required), "{error}");
    }
}
