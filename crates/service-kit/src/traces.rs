//! Distributed traces: the services' `tracing` spans exported over OTLP/gRPC, with the W3C
//! trace context carried on every gRPC hop, so that one transfer is one trace across the
//! gateway and both participants (and the reconciler's later work links back to it).
//!
//! Configured by the standard OpenTelemetry variables, and off unless an endpoint is set
//! (so `make run` and the tests stay quiet):
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector,
//!   `http://HOST:4317` (or `https://`, trusting the CA in
//!   `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` / `OTEL_EXPORTER_OTLP_CERTIFICATE`);
//! - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: off even with an endpoint;
//! - read by the SDK itself: `OTEL_SERVICE_NAME` (default: the binary's name),
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG` (default: parent-based, always
//!   on), `OTEL_BSP_*` (batching), `OTEL_EXPORTER_OTLP_*_TIMEOUT`/`_HEADERS`/`_COMPRESSION`.
//!
//! Bounds: spans wait in the SDK's batch queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048;
//! beyond it spans are dropped, never waited for) and each export has a deadline
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s). A collector that is down costs dropped
//! spans, never a slower transfer.
//!
//! Propagation: [`PropagateTrace`] (a client interceptor) writes `traceparent` from the
//! current span; [`TraceLayer`] (a server tower layer) reads it and opens the call's span
//! under it. What a transfer stores to link later work to its trace is
//! [`current_traceparent`]; [`link_to`] adds that link.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long a stopping service waits for its last spans to be exported.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Set once the exporter is installed: the propagation code does nothing before.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Every `OTEL_*` variable that configures the traces, read here or by the SDK (the
/// deployment test checks the manifests set no other).
pub const VARIABLES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
];

const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const CERTIFICATE_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];

/// What the environment asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSettings {
    pub endpoint: String,
    /// The CA that a `https://` collector's certificate must chain to.
    pub ca_file: Option<String>,
}

impl TraceSettings {
    /// From the `OTEL_*` variables read by `var`; `None` when traces are off.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<TraceSettings> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
            return None;
        }
        let endpoint = ENDPOINT_VARS.iter().find_map(|name| set(name))?;
        let ca_file = CERTIFICATE_VARS.iter().find_map(|name| set(name));
        Some(TraceSettings { endpoint, ca_file })
    }

    pub fn from_env() -> Option<TraceSettings> {
        TraceSettings::from_vars(|name| std::env::var(name).ok())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("reading the collector's CA {path}: {source}")]
    Certificate {
        path: String,
        source: std::io::Error,
    },
}

/// The exporter, installed: flush it before the process exits.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    pub fn new(provider: SdkTracerProvider) -> Tracing {
        Tracing { provider }
    }

    /// Exports the spans still queued and stops, within [`FLUSH_TIMEOUT`] (a collector
    /// that is down must not hold a stopping pod past its grace period). Runs on a
    /// blocking thread: the SDK blocks its caller while the export itself needs this
    /// runtime's workers.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let result =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing the last spans failed"),
            Err(err) => tracing::warn!(error = %err, "flushing the last spans panicked"),
        }
    }
}

/// Builds the OTLP exporter and its tracer provider for `service`. Must run inside a
/// Tokio runtime (the gRPC channel belongs to it).
pub fn provider(
    service: &'static str,
    settings: &TraceSettings,
) -> Result<SdkTracerProvider, TraceError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| TraceError::Certificate {
            path: path.clone(),
            source,
        })?;
        builder = builder.with_tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        );
    }
    let exporter = OnRuntime {
        inner: Arc::new(builder.build()?),
        runtime: tokio::runtime::Handle::current(),
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Turns the propagation on, once the layer of [`layer`] is installed.
pub(crate) fn mark_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("banktransfer"))
}

/// The SDK's batch processor exports from a thread of its own, outside any Tokio runtime,
/// where the tonic exporter cannot do I/O: each export runs as a task on the runtime the
/// exporter was built in, and the processor's thread waits for it.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = Arc::clone(&self.inner);
        match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(err) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                format!("the export task failed: {err}"),
            )),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called while building the provider, before any export shares the exporter.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The W3C `traceparent` of the current span (`00-TRACEID-SPANID-FLAGS`), to be stored
/// with a transfer; `None` when traces are off or the span is not sampled.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = TraceParent(None);
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.0
}

/// Links `span` to the trace a stored `traceparent` names (the reconciler's work on a
/// transfer points back at the request that started it). Unparsable text is ignored.
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&TraceParent(Some(traceparent.to_owned())));
    let linked = parent.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// A carrier holding only `traceparent` (no `tracestate`: the transfer log keeps one
/// short, checked column).
struct TraceParent(Option<String>);

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for TraceParent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Client side: writes the current span's trace context into each call's metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if enabled() {
            let context = tracing::Span::current().context();
            TraceContextPropagator::new()
                .inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        }
        Ok(request)
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Whose trace a call joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceContext {
    /// The caller's, when it sends a `traceparent`: for services whose callers are our own
    /// (authenticated by their certificates).
    FromCaller,
    /// Always a new trace: for a public endpoint, whose clients must not choose our trace
    /// ids or switch our sampling off.
    NewTrace,
}

/// Server side: each call runs in a `grpc` span named after its method
/// (`package.Service/Method`), a child of the caller's span when the call carries a
/// `traceparent` and `trace_context` allows it, else the root of a new trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceLayer {
    trace_context: TraceContext,
}

impl TraceLayer {
    pub fn new(trace_context: TraceContext) -> TraceLayer {
        TraceLayer { trace_context }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            trace_context: self.trace_context,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
    trace_context: TraceContext,
}

impl<S, B> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !enabled() {
            return Box::pin(self.inner.call(request));
        }
        let span = server_span(&request, self.trace_context);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(future.instrument(span))
    }
}

/// The call's span, under the caller's trace context if it sent one.
fn server_span<B>(request: &http::Request<B>, trace_context: TraceContext) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    if trace_context == TraceContext::NewTrace {
        return span;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is already closed or has no OpenTelemetry data (off).
        let _ = span.set_parent(parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(TraceSettings::from_vars(vars(&[])), None);
        assert_eq!(
            TraceSettings::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            None,
            "blank is unset"
        );
    }

    #[test]
    fn the_traces_endpoint_wins_over_the_general_one() {
        let settings = TraceSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ]))
        .unwrap();
        assert_eq!(settings.endpoint, "http://traces:4317");
        assert_eq!(settings.ca_file.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn disabled_wins_over_an_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                TraceSettings::from_vars(vars(&[endpoint, off])),
                None,
                "{off:?}"
            );
        }
        assert!(
            TraceSettings::from_vars(vars(&[endpoint, ("OTEL_SDK_DISABLED", "false")])).is_some()
        );
    }

    /// The trace id of the span `server_span` opens for a call carrying `traceparent`.
    fn served_trace_id(trace_context: TraceContext, traceparent: &str) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let request = http::Request::builder()
                .uri("/banktransfer.gateway.v1.TransferService/ApproveTransfer")
                .header("traceparent", traceparent)
                .body(())
                .unwrap();
            let span = server_span(&request, trace_context);
            span.context().span().span_context().trace_id().to_string()
        })
    }

    #[test]
    fn a_service_continues_its_callers_trace_and_a_public_endpoint_does_not() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            served_trace_id(TraceContext::FromCaller, traceparent),
            caller
        );
        let fresh = served_trace_id(TraceContext::NewTrace, traceparent);
        assert_ne!(fresh, caller);
        assert_ne!(fresh, "00000000000000000000000000000000", "a real trace");
    }

    #[test]
    fn a_stored_traceparent_reads_back_as_the_same_span_context() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContextPropagator::new().extract(&TraceParent(Some(text.to_owned())));
        let span = context.span().span_context().clone();
        assert!(span.is_valid());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut carrier = TraceParent(None);
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        assert_eq!(carrier.0.as_deref(), Some(text));
        let garbage = TraceContextPropagator::new().extract(&TraceParent(Some("00-zz".into())));
        assert!(!garbage.span().span_context().is_valid());
    }
}
