//! The per-RPC metrics every server records: `grpc_server_requests_total{service,method,code}`
//! and `grpc_server_request_duration_seconds{service,method}`, as a tower layer around the
//! server's services, outside the service-wide `in_flight_max` limit.
//!
//! Not counted: what tonic refuses outside every layer, before a request reaches this one
//! (its load shedding answers RESOURCE_EXHAUSTED when `in_flight_max` or the per-connection
//! stream limit is reached). A call abandoned while in this layer (tonic's request timeout,
//! or a client's reset) is counted as `Canceled`.
//!
//! The code: tonic answers a handler's error as a trailers-only response, with
//! `grpc-status` in the headers; an answer with a body carries its status in the trailers,
//! which for our unary methods is OK, so a missing header counts as OK. An error from the
//! stack itself (timeout, load shedding) is mapped as tonic maps it for the client.
//!
//! Cardinality: the path comes from the client. A service not served here is counted as
//! `service="unknown"`, and a method answered UNIMPLEMENTED as `method="unknown"`, so no
//! client can create label values at will.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;

use super::{GRPC_REQUEST_DURATION_SECONDS, GRPC_REQUESTS_TOTAL, counter, enabled, histogram};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Records every call's count and latency (when metrics are on) for the services named.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    services: Arc<[String]>,
}

impl GrpcMetricsLayer {
    /// `services`: the fully qualified gRPC services this server answers.
    pub fn new<S: AsRef<str>>(services: impl IntoIterator<Item = S>) -> Self {
        GrpcMetricsLayer {
            services: services
                .into_iter()
                .map(|s| s.as_ref().to_owned())
                .collect(),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService {
            inner,
            services: Arc::clone(&self.services),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    services: Arc<[String]>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !enabled() {
            let called = self.inner.call(request);
            return Box::pin(async move { called.await.map_err(Into::into) });
        }
        let (service, method) = split_path(request.uri().path(), &self.services);
        let mut call = Call {
            service,
            method,
            started: Instant::now(),
            recorded: false,
        };
        let called = self.inner.call(request);
        Box::pin(async move {
            let result = called.await.map_err(Into::into);
            call.record(match &result {
                Ok(response) => response_code(response.headers()),
                Err(error) => error_code(error.as_ref()),
            });
            result
        })
    }
}

/// One call being timed. Dropped unrecorded, it was abandoned (the server's request
/// timeout, or the client reset the stream): counted as CANCELLED, as tonic answers a
/// timeout.
struct Call {
    service: String,
    method: String,
    started: Instant,
    recorded: bool,
}

impl Call {
    fn record(&mut self, code: Code) {
        self.recorded = true;
        let method = if code == Code::Unimplemented {
            "unknown".to_owned()
        } else {
            std::mem::take(&mut self.method)
        };
        let service = std::mem::take(&mut self.service);
        histogram!(GRPC_REQUEST_DURATION_SECONDS, "service" => service.clone(), "method" => method.clone())
            .record(self.started.elapsed().as_secs_f64());
        counter!(GRPC_REQUESTS_TOTAL, "service" => service, "method" => method, "code" => code_name(code))
            .increment(1);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(Code::Cancelled);
        }
    }
}

/// `/pkg.Service/Method` into its service and method, "unknown" for a service not served.
fn split_path(path: &str, services: &[String]) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    if services.iter().any(|s| s == service) && !method.is_empty() && !method.contains('/') {
        (service.to_owned(), method.to_owned())
    } else {
        ("unknown".to_owned(), "unknown".to_owned())
    }
}

/// The status in the response headers (a trailers-only answer), else OK.
fn response_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// The status tonic answers for an error of the stack itself.
fn error_code(error: &(dyn std::error::Error + 'static)) -> Code {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        status.code()
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        Code::ResourceExhausted
    } else if error.to_string().contains("Timeout expired") {
        // tonic's own request timeout (its error type is private): answered CANCELLED.
        Code::Cancelled
    } else {
        Code::Unknown
    }
}

/// The code's canonical name as grpc-go spells it (what the alerts match on).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_only_for_served_services() {
        let services = ["a.v1.S".to_owned()];
        assert_eq!(
            split_path("/a.v1.S/Do", &services),
            ("a.v1.S".to_owned(), "Do".to_owned())
        );
        for path in ["/b.v1.T/Do", "/a.v1.S/", "/a.v1.S/x/y", "/"] {
            assert_eq!(
                split_path(path, &services),
                ("unknown".to_owned(), "unknown".to_owned()),
                "{path}"
            );
        }
    }

    #[test]
    fn a_missing_status_header_is_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(response_code(&headers), Code::Ok);
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        assert_eq!(response_code(&headers), Code::ResourceExhausted);
        assert_eq!(code_name(Code::Cancelled), "Canceled");
    }
}
