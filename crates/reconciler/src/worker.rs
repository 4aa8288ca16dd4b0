//! The schedule: a pass every `pass_interval`, until shutdown; then this replica's
//! leases are released so another replica need not wait for them to expire.

use std::sync::Arc;
use std::time::Duration;

use coordinator::participants::Participants;
use coordinator::store::TransferStore;
use service_kit::shutdown::Shutdown;

use crate::pass::{PassReport, Reconciler};

pub async fn run<S: TransferStore, P: Participants>(
    reconciler: Arc<Reconciler<S, P>>,
    shutdown: Shutdown,
    pass_interval: Duration,
) {
    tracing::info!(
        replica_id = reconciler.replica_id(),
        ?pass_interval,
        "reconciler started"
    );
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(pass_interval) => {}
        }
        // Not raced against the shutdown: the pass finishes the transfer in hand
        // (bounded by its calls' deadlines) and stops before the next one.
        match reconciler.run_pass().await {
            Ok(report) if report == PassReport::default() => {}
            Ok(report) => tracing::info!(?report, "pass done"),
            Err(err) => tracing::warn!(error = ?err, "pass failed; trying again next interval"),
        }
    }
    reconciler.release_leases().await;
    tracing::info!("reconciler stopped");
}
