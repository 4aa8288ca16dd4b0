//! The standard gRPC health check (`grpc.health.v1`, service name `""`), over TLS like
//! every other call (the health service answers any caller the TLS layer accepts).

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health_client::pb::HealthCheckRequest;
use tonic_health_client::pb::health_check_response::ServingStatus;
use tonic_health_client::pb::health_client::HealthClient;

/// One check of the server's overall status on `127.0.0.1:port`, on a connection of its
/// own.
pub async fn check(
    port: u16,
    tls: ClientTlsConfig,
    timeout: Duration,
) -> Result<ServingStatus, String> {
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| format!("TLS configuration: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    check_on(channel, timeout).await
}

/// One check over `channel`: connects it if it is not connected yet (the TLS handshake
/// included), so that later calls on the same channel do not pay for it.
pub async fn check_on(channel: Channel, timeout: Duration) -> Result<ServingStatus, String> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    let response = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| format!("health check: {status}"))?;
    Ok(response.into_inner().status())
}
