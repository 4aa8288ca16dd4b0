//! The same scenarios on PostgreSQL: the happy path, a crash, and the concurrency test
//! (where row locking matters). Skips loudly when no server is reachable, unless
//! `REQUIRE_POSTGRES=1` (see `testkit::db`).

use banktransfer_e2e::scenarios;
use banktransfer_e2e::{Cluster, ClusterConfig, DatabaseChoice, PausePoint};

/// On PostgreSQL, with the patient default budget: a debug gateway's first transfer on a fresh
/// database opens its pool connections and prepares its statements inside the budget, which
/// on a loaded 2-core machine misses 200 ms now and then. These tests are about the back
/// end's correctness; `make bench` measures latency (release, warm).
fn on_postgres() -> ClusterConfig {
    ClusterConfig {
        database: DatabaseChoice::Postgres,
        ..ClusterConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_happy_path() {
    let Some(mut cluster) = Cluster::start_if_available(on_postgres()).await else {
        return;
    };
    scenarios::happy_path(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gateway_killed_after_decision() {
    let mut config = on_postgres();
    config.gateway.pause_at = PausePoint::AfterDecision;
    let Some(mut cluster) = Cluster::start_if_available(config).await else {
        return;
    };
    scenarios::gateway_killed_at(&mut cluster, PausePoint::AfterDecision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gateway_killed_after_reserve() {
    let mut config = on_postgres();
    config.gateway.pause_at = PausePoint::AfterReserve;
    let Some(mut cluster) = Cluster::start_if_available(config).await else {
        return;
    };
    scenarios::gateway_killed_at(&mut cluster, PausePoint::AfterReserve).await;
}

/// Row locking on one account: with a patient budget the burst queues on the row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_transfers_never_overdraw() {
    let Some(mut cluster) = Cluster::start_if_available(on_postgres()).await else {
        return;
    };
    scenarios::concurrent_transfers_never_overdraw(&mut cluster, true).await;
}
