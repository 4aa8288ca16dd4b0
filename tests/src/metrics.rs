//! Scraping a service's Prometheus endpoint (`[metrics] listen_addr`) over plain HTTP/1.1.

use std::io::{Read, Write};
use std::time::Duration;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` on 127.0.0.1:`port`: the body. Panics on anything but a 200.
pub async fn scrape(port: u16) -> String {
    tokio::task::spawn_blocking(move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
            .unwrap_or_else(|e| panic!("no metrics endpoint on {addr}: {e}"));
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    })
    .await
    .expect("scrape task")
}

/// The value of the sample whose name and labels are exactly `series`, e.g.
/// `banktransfer_transfers_total{outcome="succeeded",failure_reason=""}`.
pub fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("a sample's value"))
    })
}

/// `promtool check metrics` on `scrape` when promtool is installed (Debian's `prometheus`
/// package); skipped loudly without it, unless REQUIRE_PROMTOOL=1.
pub fn promtool_check(scrape: &str) {
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
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
        .expect("promtool's stdin")
        .write_all(scrape.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
