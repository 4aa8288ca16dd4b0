//! The metrics endpoint (`[metrics] listen_addr`): gRPC calls through the server shell are
//! counted by service, method and code and timed; the pool, store and group-commit
//! metrics appear (a batch's size in buckets of writes, not seconds); the
//! scrape is Prometheus' text format as `promtool check metrics` reads it. One test: the
//! recorder is process-wide.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use service_kit::group_commit::{BoxFuture, GroupCommit, GroupCommitSettings, Job};
use service_kit::metrics::{MetricsSection, StoreTimer, install};
use service_kit::server::{ServerSettings, serve};
use sqlx::AnyConnection;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const SERVICE: &str = "banktransfer.test.v1.Nothing";

/// A port that was free a moment ago: the exporter binds the address itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` over plain HTTP/1.1; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut last_error = None;
    for _ in 0..100 {
        match std::net::TcpStream::connect(addr) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
                write!(
                    stream,
                    "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert!(!head.contains("chunked"), "{head}");
                return body.to_owned();
            }
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no metrics endpoint on {addr}: {last_error:?}");
}

/// A write that writes nothing: enough for a group commit to count its batch.
struct Nothing;

impl Job for Nothing {
    type Output = ();
    type Error = String;

    fn run_many<'c>(
        jobs: &'c [&'c Self],
        _conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Vec<()>, String>> {
        Box::pin(async move { Ok(vec![(); jobs.len()]) })
    }

    fn run_alone<'c>(&'c self, _conn: &'c mut AnyConnection) -> BoxFuture<'c, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn unavailable(detail: String) -> String {
        detail
    }
}

/// The value of the sample whose name and labels are exactly `series`.
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// `promtool check metrics` on the scrape, when promtool is installed (Debian's
/// `prometheus` package); REQUIRE_PROMTOOL=1 makes its absence a failure.
fn promtool_check(scrape: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "REQUIRE_PROMTOOL=1 but promtool cannot run: {error}"
            );
            eprintln!("SKIPPED: promtool check metrics (promtool not found: {error})");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_store_operations_and_the_pool_are_scraped() {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let installed = install(&MetricsSection {
        listen_addr: metrics_addr.to_string(),
    })
    .unwrap();
    assert_eq!(installed, Some(metrics_addr));
    assert!(service_kit::metrics::enabled());

    // A database pool, sampled once metrics are on.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let db = service_kit::db::connect(&url, service_kit::db::PoolSettings::default())
        .await
        .unwrap();
    drop(StoreTimer::start("reserve"));
    let writes: GroupCommit<Nothing> =
        GroupCommit::start(db.clone(), GroupCommitSettings::default());
    writes
        .submit(Nothing)
        .await
        .expect("a write that writes nothing commits");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        tonic::service::Routes::default(),
        &[SERVICE],
        ServerSettings::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    health.check(check(SERVICE)).await.unwrap();
    health.check(check("")).await.unwrap();
    let refused = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let scraped = tokio::task::spawn_blocking(move || scrape(metrics_addr))
        .await
        .unwrap();
    let labels = r#"service="grpc.health.v1.Health",method="Check""#;
    assert_eq!(
        value(
            &scraped,
            &format!(r#"grpc_server_requests_total{{{labels},code="OK"}}"#)
        ),
        Some(2.0),
        "{scraped}"
    );
    assert_eq!(
        value(
            &scraped,
            &format!(r#"grpc_server_requests_total{{{labels},code="NotFound"}}"#)
        ),
        Some(1.0),
        "{scraped}"
    );
    assert_eq!(
        value(
            &scraped,
            &format!(r#"grpc_server_request_duration_seconds_count{{{labels}}}"#)
        ),
        Some(3.0),
        "{scraped}"
    );
    // The 200 ms budget is a bucket boundary.
    assert!(
        value(
            &scraped,
            &format!(r#"grpc_server_request_duration_seconds_bucket{{{labels},le="0.2"}}"#)
        )
        .is_some(),
        "{scraped}"
    );
    assert_eq!(
        value(
            &scraped,
            r#"banktransfer_store_duration_seconds_count{operation="reserve"}"#
        ),
        Some(1.0),
        "{scraped}"
    );
    // One batch of one write: in the first bucket, which counts writes, not seconds.
    for (series, expected) in [
        ("banktransfer_group_commit_batch_writes_count", 1.0),
        ("banktransfer_group_commit_batch_writes_sum", 1.0),
        (
            r#"banktransfer_group_commit_batch_writes_bucket{le="1"}"#,
            1.0,
        ),
    ] {
        assert_eq!(
            value(&scraped, series),
            Some(expected),
            "{series}: {scraped}"
        );
    }
    let idle = value(
        &scraped,
        r#"banktransfer_db_pool_connections{state="idle"}"#,
    );
    let in_use = value(
        &scraped,
        r#"banktransfer_db_pool_connections{state="in_use"}"#,
    );
    assert!(idle.is_some() && in_use.is_some(), "{scraped}");
    assert!(
        idle.unwrap() + in_use.unwrap() <= 1.0,
        "SQLite: one connection"
    );
    promtool_check(&scraped);

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    db.pool.close().await;
}
