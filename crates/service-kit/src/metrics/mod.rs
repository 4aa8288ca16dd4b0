//! Prometheus metrics: `[metrics]` (the same table in every service), the exporter, and the
//! helpers every service records with. The names, labels and buckets are a contract with
//! `deploy/monitoring/` (its README lists them; the alerts and the dashboard use them).
//!
//! Off unless `metrics.listen_addr` is set: then [`install`] registers the process-wide
//! recorder (the `metrics` facade) and serves Prometheus' text format at
//! `http://<listen_addr>/metrics` (`metrics-exporter-prometheus`). While off, nothing is
//! recorded: the request layer and the samplers check [`enabled`] first, so tests and a
//! plain `make run` pay nothing for them.
//!
//! Low cardinality only: no user, account, transfer or idempotency key in any label.

pub mod grpc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;

use crate::config::ConfigError;

pub use ::metrics::{counter, gauge, histogram};

/// Histogram buckets (seconds) of every histogram: the 200 ms budget is a boundary, so the
/// ApproveTransfer p99 alert compares against a bucket, not an interpolation. The buckets
/// under 5 ms are there because a store operation or a participant's call takes about a
/// millisecond at light load: without them every one of them falls in the first bucket.
pub const BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const GRPC_REQUESTS_TOTAL: &str = "grpc_server_requests_total";
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "grpc_server_request_duration_seconds";
pub const TRANSFERS_TOTAL: &str = "banktransfer_transfers_total";
pub const ADMISSION_REFUSALS_TOTAL: &str = "banktransfer_admission_refusals_total";
pub const RECONCILER_BACKLOG: &str = "banktransfer_reconciler_backlog";
pub const RECONCILER_BACKLOG_OLDEST_AGE_SECONDS: &str =
    "banktransfer_reconciler_backlog_oldest_age_seconds";
pub const AUDIT_MISMATCHES: &str = "banktransfer_audit_mismatches";
pub const DB_POOL_CONNECTIONS: &str = "banktransfer_db_pool_connections";
pub const STORE_DURATION_SECONDS: &str = "banktransfer_store_duration_seconds";
pub const GROUP_COMMIT_BATCH_WRITES: &str = "banktransfer_group_commit_batch_writes";

/// Buckets of [`GROUP_COMMIT_BATCH_WRITES`]: writes, up to a batch's maximum (64).
pub const BATCH_WRITES_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// How often the database pool's connections are sampled.
const POOL_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Set once the recorder is installed; never cleared (the recorder is process-wide).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// `[metrics]`: the same table in every service.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MetricsSection {
    /// `HOST:PORT` of the Prometheus endpoint (`/metrics`); "" (the default): no metrics.
    /// The deployment uses 9101 (gateway), 9102 (external institution), 9103 (balance
    /// store) and 9104 (reconciler).
    pub listen_addr: String,
}

impl MetricsSection {
    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.addr().map(|_| ())
    }

    /// The endpoint's address, if metrics are on.
    pub fn addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let addr = self.listen_addr.trim();
        if addr.is_empty() {
            return Ok(None);
        }
        addr.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "metrics.listen_addr {addr:?}: use IP:PORT, e.g. 0.0.0.0:9101, or \"\" for none"
            ))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("metrics.listen_addr {addr}: {detail}")]
    Exporter { addr: SocketAddr, detail: String },
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

/// Whether metrics are being recorded in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts the Prometheus endpoint when `section` sets an address (else does nothing and
/// returns `Ok(None)`). Call once per process, inside the Tokio runtime, before the
/// database pool is opened (the pool sampler starts only when metrics are on).
pub fn install(section: &MetricsSection) -> Result<Option<SocketAddr>, MetricsError> {
    let Some(addr) = section.addr()? else {
        return Ok(None);
    };
    let exporter = |detail: String| MetricsError::Exporter { addr, detail };
    let (recorder, serving) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS_SECONDS)
        .map_err(|e| exporter(e.to_string()))?
        .set_buckets_for_metric(
            Matcher::Full(GROUP_COMMIT_BATCH_WRITES.to_owned()),
            BATCH_WRITES_BUCKETS,
        )
        .map_err(|e| exporter(e.to_string()))?
        .build()
        .map_err(|e| exporter(e.to_string()))?;
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    describe();
    ENABLED.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(error) = serving.await {
            tracing::error!(?error, "metrics endpoint failed; Prometheus cannot scrape");
        }
    });
    tracing::info!(%addr, "metrics endpoint listening on /metrics");
    Ok(Some(addr))
}

/// Every metric's help text (`# HELP`, which `promtool check metrics` asks for).
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC calls handled, by service, method and status code"
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a gRPC request to its response, by service and method"
    );
    describe_counter!(
        TRANSFERS_TOTAL,
        "ApproveTransfer answers by outcome and failure reason"
    );
    describe_counter!(
        ADMISSION_REFUSALS_TOTAL,
        "Requests refused before any work, by reason"
    );
    describe_gauge!(
        RECONCILER_BACKLOG,
        "Unfinished transfers the reconciler sees, by state"
    );
    describe_gauge!(
        RECONCILER_BACKLOG_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest unfinished transfer (0 when none)"
    );
    describe_gauge!(
        AUDIT_MISMATCHES,
        "Mismatches found by the reconciler's last audit; must stay 0"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "The database pool's connections, by state (idle, in_use)"
    );
    describe_histogram!(
        STORE_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one store operation (a transaction), by operation"
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH_WRITES,
        "Writes that one group commit took together into one transaction"
    );
}

/// Counts one group commit's batch of `writes` into
/// `banktransfer_group_commit_batch_writes`: how many writes share a commit, which is
/// what a store's cost per write follows (docs/PERFORMANCE.md).
pub fn record_group_commit_batch(writes: usize) {
    if enabled() {
        histogram!(GROUP_COMMIT_BATCH_WRITES).record(writes as f64);
    }
}

/// Samples `pool`'s connections (`banktransfer_db_pool_connections{state}`) every few
/// seconds while metrics are on, until the pool is closed.
pub fn sample_pool(pool: &sqlx::AnyPool) {
    if !enabled() {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POOL_SAMPLE_INTERVAL);
        while !pool.is_closed() {
            tick.tick().await;
            let size = pool.size() as usize;
            let idle = pool.num_idle();
            gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
            gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(size.saturating_sub(idle) as f64);
        }
    });
}

/// Times one store operation (a transaction) into
/// `banktransfer_store_duration_seconds{operation}` when dropped, whatever its result.
#[must_use = "the operation is timed until this is dropped"]
pub struct StoreTimer {
    operation: &'static str,
    started: Option<Instant>,
}

impl StoreTimer {
    pub fn start(operation: &'static str) -> StoreTimer {
        StoreTimer {
            operation,
            started: enabled().then(Instant::now),
        }
    }
}

impl Drop for StoreTimer {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            histogram!(STORE_DURATION_SECONDS, "operation" => self.operation)
                .record(started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_an_address_must_parse() {
        assert_eq!(MetricsSection::default().addr().unwrap(), None);
        let on = MetricsSection {
            listen_addr: " 127.0.0.1:9101 ".into(),
        };
        assert_eq!(on.addr().unwrap(), Some("127.0.0.1:9101".parse().unwrap()));
        let bad = MetricsSection {
            listen_addr: "localhost".into(),
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(message.contains("metrics.listen_addr"), "{message}");
    }

    #[test]
    fn the_budget_is_a_bucket_boundary() {
        assert!(BUCKETS_SECONDS.contains(&0.2));
        assert!(BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_light_load_store_operation_does_not_land_in_the_first_bucket() {
        // A write at light load takes about a millisecond: the histogram must tell 0.5 ms
        // from 2.5 ms, or it cannot say which step of a transfer makes its tail.
        assert!(BUCKETS_SECONDS[0] <= 0.0005);
        assert!(BUCKETS_SECONDS.contains(&0.001) && BUCKETS_SECONDS.contains(&0.0025));
    }
}
