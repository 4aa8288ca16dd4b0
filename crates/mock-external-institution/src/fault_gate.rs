//! The injected faults as the participant's call gate: the shared `ReservationService`
//! passes every reserve, confirm and cancel through [`FaultGate`], which applies the first
//! matching fault (never to reads or account opening, so tests can always look at the
//! state).

use std::future::Future;
use std::time::Duration;

use participant::grpc::CallGate;
use service_kit::shutdown::Shutdown;
use tonic::Status;

use crate::fault_injection::{SharedFaults, lock};
use crate::faults::{FaultKind, Operation};

/// How long a lost reply stays unanswered, unless the server shuts down first: far past
/// any caller's deadline, and past the server's own request timeout (which then drops the
/// call), yet bounded.
const LOST_REPLY_HOLD_MS: u64 = 60_000;

/// The fault list the FaultInjection service edits, applied to the calls.
pub struct FaultGate {
    faults: SharedFaults,
    shutdown: Shutdown,
}

impl FaultGate {
    /// Lost replies wait for `shutdown`, so that shutting down does not wait out their
    /// hold.
    pub fn new(faults: SharedFaults, shutdown: Shutdown) -> FaultGate {
        FaultGate { faults, shutdown }
    }
}

impl CallGate for FaultGate {
    /// Runs `apply` (the operation) as the first matching fault, if any, says.
    async fn pass<T: Send + 'static>(
        &self,
        operation: Operation,
        transfer_id: &str,
        apply: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        let fired = lock(&self.faults).fire(operation);
        let Some(fault) = fired else {
            return apply.await;
        };
        tracing::warn!(
            transfer_id,
            fault_id = %fault.fault_id,
            %operation,
            kind = ?fault.kind,
            "injected fault fires"
        );
        match fault.kind {
            FaultKind::Error => Err(Status::internal(format!(
                "injected fault: {} failed {operation} without applying it",
                fault.fault_id
            ))),
            FaultKind::Unavailable => Err(Status::unavailable(format!(
                "injected fault: {} made {operation} unavailable without applying it",
                fault.fault_id
            ))),
            FaultKind::Latency { latency_ms } => {
                tokio::time::sleep(Duration::from_millis(latency_ms.into())).await;
                apply.await
            }
            FaultKind::LoseReply => {
                // On a task of its own: the caller's deadline drops this handler, and the
                // operation must still run to its commit.
                let applied = tokio::spawn(apply).await;
                tracing::warn!(
                    transfer_id,
                    fault_id = %fault.fault_id,
                    applied_ok = matches!(applied, Ok(Ok(_))),
                    "operation applied; its reply is lost"
                );
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(LOST_REPLY_HOLD_MS)) => {}
                    () = self.shutdown.wait() => {}
                }
                Err(Status::unavailable(format!(
                    "injected fault: {} lost the reply to {operation}",
                    fault.fault_id
                )))
            }
        }
    }
}
