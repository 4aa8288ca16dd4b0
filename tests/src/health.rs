//! The standard gRPC health check (`grpc.health.v1`, service name `""`).

use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health_client::pb::HealthCheckRequest;
use tonic_health_client::pb::health_check_response::ServingStatus;
use tonic_health_client::pb::health_client::HealthClient;

/// One check of the server's overall status on `127.0.0.1:port`.
pub async fn check(port: u16, timeout: Duration) -> Result<ServingStatus, String> {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| format!("health check: {status}"))?;
    Ok(response.into_inner().status())
}
