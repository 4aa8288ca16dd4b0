//! The plaintext health-only listener for probes (`[server] health_listen_addr`): it
//! answers the health service with the main server's statuses, turns NOT_SERVING when
//! shutdown starts, serves no other method, and closes with the main server.

use std::time::Duration;

use service_kit::server::{ServeError, ServerSection, ServerSettings, serve};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The service name the main server registers (any name: health only reports it).
const SERVICE: &str = "banktransfer.test.v1.Nothing";

/// A port that was free a moment ago: `serve` binds the health address itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn channel(port: u16) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    // The server task binds the health listener after it starts: retry the connect.
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

async fn status(channel: Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|response| response.into_inner().status)
}

fn settings(health_port: u16) -> ServerSettings {
    ServerSection {
        health_listen_addr: format!("127.0.0.1:{health_port}"),
        // Long enough that the test sees NOT_SERVING before the server stops.
        shutdown_grace_ms: 60_000,
        // Reflection on the main port must not appear on the health-only one.
        reflection: true,
        ..ServerSection::default()
    }
    .settings_without_tls()
}

#[tokio::test]
async fn probes_see_the_main_servers_status_and_nothing_else() {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_port = free_port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        main,
        tonic::service::Routes::default(),
        &[SERVICE],
        settings(health_port),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let health = channel(health_port).await;
    assert_eq!(
        status(health.clone(), "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        status(health.clone(), SERVICE).await.unwrap(),
        ServingStatus::Serving as i32
    );
    // Health only: reflection, served on the main port, is not here.
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            health.clone(),
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let refused = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");

    // Shutdown starts: probes see NOT_SERVING while in-flight work drains.
    stop_tx.send(()).unwrap();
    let mut seen = ServingStatus::Serving as i32;
    for _ in 0..100 {
        seen = status(health.clone(), "").await.unwrap();
        if seen == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, ServingStatus::NotServing as i32);
    assert_eq!(
        status(health, SERVICE).await.unwrap(),
        ServingStatus::NotServing as i32
    );
    server.abort();
}

#[tokio::test]
async fn the_health_listener_stops_with_the_server() {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_port = free_port();
    let settings = ServerSettings {
        shutdown_grace: Duration::ZERO,
        ..settings(health_port)
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        main,
        tonic::service::Routes::default(),
        &[SERVICE],
        settings,
        async move {
            let _ = stop_rx.await;
        },
    ));
    channel(health_port).await;
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The listener is gone: a new connection is refused.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", health_port)).await;
    assert!(refused.is_err(), "the health-only port still accepts");
}

#[tokio::test]
async fn an_unusable_health_address_fails_the_start_naming_the_key() {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = serve(
        main,
        tonic::service::Routes::default(),
        &[SERVICE],
        settings(port),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ServeError::HealthBind { .. }), "{error}");
    assert!(error.to_string().contains("health_listen_addr"), "{error}");
}
