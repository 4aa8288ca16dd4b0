//! gRPC channels to other services. Channels connect lazily, so a service starts even
//! when its peers are down; every call still carries its own deadline.
//!
//! Every channel speaks TLS: it trusts only the configured CA and presents this service's
//! certificate (the participants serve their reservation calls only to the coordinator's
//! identities). Generated clients built on a channel should also cap messages at
//! [`crate::server::MESSAGE_BYTES_MAX`] (see [`limit`]).

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// A lazily connected TLS channel to `url` (`https://HOST:PORT`; the certificate must name
/// HOST), with bounded connect time and keep-alive, so that a dead peer is noticed instead
/// of waited on.
pub fn channel(
    url: &str,
    connect_timeout: Duration,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(url, connect_timeout)?
        .tls_config(tls)?
        .connect_lazy())
}

/// As [`channel`] without TLS, for transports that cannot carry it (the simulation's
/// network supplies its own connector).
pub fn endpoint(url: &str, connect_timeout: Duration) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Connects `channel` in the background now, with one health check (no method
/// authorization is needed for it), so that the first real call does not pay the TCP and
/// TLS handshakes inside its deadline (the gateway's first transfer would otherwise spend
/// a good part of its 200 ms budget there). A peer that is down is only logged: the
/// channel keeps connecting lazily, and each call still has its own deadline.
pub fn warm_up(channel: &Channel, peer: &'static str, connect_timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    runtime.spawn(async move {
        let request = with_deadline(
            tonic_health::pb::HealthCheckRequest::default(),
            connect_timeout,
        );
        match health.check(request).await {
            Ok(_) => tracing::info!(peer, "connected"),
            Err(status) => tracing::warn!(peer, code = ?status.code(), message = ?status.message(), "not reachable yet; calls will keep trying"),
        }
    });
}

/// Checks that a peer URL is `https://HOST:PORT`; the message names `key`.
pub fn validate_peer_url(key: &str, url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "{key} must be https://HOST:PORT (every BankTransfer port speaks TLS)"
        ));
    };
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{key} must be https://HOST:PORT"));
    }
    Ok(())
}

/// Caps a generated client's messages both ways at [`crate::server::MESSAGE_BYTES_MAX`].
#[macro_export]
macro_rules! limit {
    ($client:expr) => {
        $client
            .max_decoding_message_size($crate::server::MESSAGE_BYTES_MAX)
            .max_encoding_message_size($crate::server::MESSAGE_BYTES_MAX)
    };
}

/// A channel whose calls carry the current span's trace context (`traceparent`), for
/// generated clients: `Client::with_interceptor(channel, PropagateTrace)` names the type.
pub type TracedChannel =
    tonic::service::interceptor::InterceptedService<Channel, crate::traces::PropagateTrace>;

/// Wraps a message in a request that carries `timeout` as its gRPC deadline.
pub fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_must_be_https() {
        validate_peer_url("external_url", "https://127.0.0.1:50052").unwrap();
        let message = validate_peer_url("external_url", "http://127.0.0.1:50052").unwrap_err();
        assert!(message.contains("external_url"), "{message}");
        assert!(validate_peer_url("external_url", "https://").is_err());
        assert!(validate_peer_url("external_url", "https://a b").is_err());
    }
}
