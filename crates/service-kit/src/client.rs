//! gRPC channels to other services. Channels connect lazily, so a service starts even
//! when its peers are down; every call still carries its own deadline.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A lazily connected channel with bounded connect time and keep-alive, so that a dead
/// peer is noticed instead of waited on.
pub fn channel(url: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Wraps a message in a request that carries `timeout` as its gRPC deadline.
pub fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}
