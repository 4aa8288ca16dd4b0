//! The ExternalInstitution gRPC service: the shared participant handlers on the debit
//! side, with the injected faults applied to reserve, confirm and cancel (never to reads
//! or account opening, so tests can always look at the state).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use banktransfer_api::external::v1::external_institution_server::ExternalInstitution;
use banktransfer_api::reservation::v1 as pb;
use participant::grpc::Participant;
use participant::{NoScreening, ReservationBook, ReservationStore};
use service_kit::shutdown::Shutdown;
use tonic::{Request, Response, Status};

use crate::fault_injection::{SharedFaults, lock};
use crate::faults::{FaultKind, Operation};

/// How long a lost reply stays unanswered, unless the server shuts down first: far past
/// any caller's deadline, and past the server's own request timeout (which then drops the
/// call), yet bounded.
const LOST_REPLY_HOLD_MS: u64 = 60_000;

pub type Book = ReservationStore<NoScreening>;

/// Over the SQL book in the service; over an in-memory one in the simulation.
pub struct InstitutionService<B = Book> {
    participant: Arc<Participant<B>>,
    faults: SharedFaults,
    shutdown: Shutdown,
}

impl<B: ReservationBook> InstitutionService<B> {
    pub fn new(
        participant: Arc<Participant<B>>,
        faults: SharedFaults,
        shutdown: Shutdown,
    ) -> InstitutionService<B> {
        InstitutionService {
            participant,
            faults,
            shutdown,
        }
    }

    /// Runs `apply` (the operation) as the first matching fault, if any, says.
    async fn with_faults<T: Send + 'static>(
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

#[tonic::async_trait]
impl<B: ReservationBook> ExternalInstitution for InstitutionService<B> {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = request.transfer_id.clone();
        let participant = Arc::clone(&self.participant);
        self.with_faults(Operation::Reserve, &transfer_id, async move {
            participant.reserve(request).await
        })
        .await
        .map(Response::new)
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = request.transfer_id.clone();
        let participant = Arc::clone(&self.participant);
        self.with_faults(Operation::Confirm, &transfer_id, async move {
            participant.confirm(request).await
        })
        .await
        .map(Response::new)
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = request.transfer_id.clone();
        let participant = Arc::clone(&self.participant);
        self.with_faults(Operation::Cancel, &transfer_id, async move {
            participant.cancel(request).await
        })
        .await
        .map(Response::new)
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        self.participant
            .get_reservation(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::OpenAccountResponse>, Status> {
        self.participant
            .open_account(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        self.participant
            .get_account(request.into_inner())
            .await
            .map(Response::new)
    }
}
