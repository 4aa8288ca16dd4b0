//! The public TransferService: bounds the requests in flight, converts at the boundary,
//! anchors each request's budget at its arrival, and maps outcomes to status codes.

use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_server::TransferService;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, ApproveTransferResponse, GetTransferRequest, GetTransferResponse,
};
use banktransfer_protocol::budget::{Budget, BudgetPolicy};
use service_kit::clock::SharedClock;
use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::{Request, Response, Status};

use crate::approve::Approver;
use crate::convert::{self, Lookup, TransferRequest};
use crate::grpc_timeout::client_timeout_ms;
use coordinator::participants::Participants;
use coordinator::store::TransferStore;

pub struct TransferApi<S, P> {
    approver: Approver<S, P>,
    store: Arc<S>,
    clock: SharedClock,
    policy: BudgetPolicy,
    in_flight: Semaphore,
    in_flight_max: usize,
    amount_minor_max: i64,
}

impl<S: TransferStore, P: Participants> TransferApi<S, P> {
    pub fn new(
        approver: Approver<S, P>,
        store: Arc<S>,
        clock: SharedClock,
        policy: BudgetPolicy,
        in_flight_max: usize,
        amount_minor_max: i64,
    ) -> TransferApi<S, P> {
        TransferApi {
            approver,
            store,
            clock,
            policy,
            in_flight: Semaphore::new(in_flight_max),
            in_flight_max,
            amount_minor_max,
        }
    }

    /// Refuses at once rather than queueing: a queued request would spend its budget
    /// waiting.
    fn admit(&self) -> Result<SemaphorePermit<'_>, Status> {
        self.in_flight.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "too many requests in flight (in_flight_max = {}): retry shortly",
                self.in_flight_max
            ))
        })
    }
}

#[tonic::async_trait]
impl<S: TransferStore, P: Participants> TransferService for TransferApi<S, P> {
    async fn approve_transfer(
        &self,
        request: Request<ApproveTransferRequest>,
    ) -> Result<Response<ApproveTransferResponse>, Status> {
        let _permit = self.admit()?;
        let budget = Budget::new(
            self.policy,
            self.clock.now_ms(),
            client_timeout_ms(request.metadata()),
        );
        let request = TransferRequest::parse(request.into_inner(), self.amount_minor_max)?;
        let record = self.approver.approve(request, budget).await?;
        Ok(Response::new(ApproveTransferResponse {
            transfer: Some(convert::transfer_to_proto(&record)),
        }))
    }

    async fn get_transfer(
        &self,
        request: Request<GetTransferRequest>,
    ) -> Result<Response<GetTransferResponse>, Status> {
        let _permit = self.admit()?;
        let lookup = Lookup::try_from(request.into_inner())?;
        let found = match &lookup {
            Lookup::TransferId(transfer_id) => self.store.get(transfer_id).await,
            Lookup::IdempotencyKey {
                user_id,
                idempotency_key,
            } => self.store.find_by_key(user_id, idempotency_key).await,
        }
        .map_err(|e| {
            let transfer_id = match &lookup {
                Lookup::TransferId(transfer_id) => Some(transfer_id.as_str()),
                Lookup::IdempotencyKey { .. } => None,
            };
            coordinator::store_status(&e, transfer_id, "retry later")
        })?;
        let record = found.ok_or_else(|| match &lookup {
            Lookup::TransferId(transfer_id) => {
                Status::not_found(format!("no transfer {transfer_id:?}"))
            }
            Lookup::IdempotencyKey {
                user_id,
                idempotency_key,
            } => Status::not_found(format!(
                "no transfer of user {user_id:?} under idempotency key {idempotency_key:?}"
            )),
        })?;
        Ok(Response::new(GetTransferResponse {
            transfer: Some(convert::transfer_to_proto(&record)),
        }))
    }
}
