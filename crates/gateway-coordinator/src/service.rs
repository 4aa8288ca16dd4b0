//! The public TransferService: bounds the requests in flight, authenticates the user by
//! bearer token, converts at the boundary, anchors each request's budget at its arrival,
//! admits ApproveTransfer drives ([`crate::admission`]) and maps outcomes to status codes.
//!
//! ApproveTransfer, in order: the process-wide `in_flight_max`; the token; the body; the
//! user's own in-flight cap; a replay of a drive running here waits for it
//! ([`Approver::join_live`]); the deadline and concurrency admission; and only then the
//! intent is written. Every refusal before that point has recorded nothing.
//!
//! The user is the token's `sub`, never the body's: an ApproveTransfer whose `user_id`
//! differs is PERMISSION_DENIED before anything is recorded or called, and GetTransfer
//! shows only the caller's own transfers (another user's answers NOT_FOUND, exactly as a
//! missing one does, so ids cannot be probed).
//!
//! ApproveTransfer answers SUCCEEDED once both legs have confirmed, before the outcome's
//! write lands ([`coordinator::driver::Driver::begin_answering`]); so GetTransfer reads
//! the legs of a transfer still recorded as committed, and answers SUCCEEDED when both
//! show their confirm ([`Approver::as_read`]), UNAVAILABLE when a leg cannot be read: no
//! one reads PROCESSING after the client was told SUCCEEDED.

use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_server::TransferService;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, ApproveTransferResponse, GetTransferRequest, GetTransferResponse,
};
use banktransfer_protocol::budget::{Budget, BudgetPolicy};
use service_kit::clock::SharedClock;
use service_kit::jwt::{AuthenticatedUser, TokenValidator};
use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::{Request, Response, Status};

use crate::admission::{AdmissionSection, Gate};
use crate::approve::{Approval, Approver};
use crate::convert::{self, Lookup, TransferRequest};
use crate::grpc_timeout::client_timeout_ms;
use crate::metrics::{self, Refusal};
use coordinator::participants::Participants;
use coordinator::store::TransferStore;

/// Sent when the body's `user_id` is not the token's user.
pub const NOT_YOUR_ACCOUNT_MSG: &str =
    "user_id must be the authenticated user (the bearer token's subject)";

pub struct TransferApi<S, P> {
    approver: Approver<S, P>,
    tokens: Arc<TokenValidator>,
    store: Arc<S>,
    clock: SharedClock,
    policy: BudgetPolicy,
    in_flight: Semaphore,
    in_flight_max: usize,
    amount_minor_max: i64,
    gate: Gate,
}

impl<S: TransferStore, P: Participants> TransferApi<S, P> {
    pub fn new(
        approver: Approver<S, P>,
        tokens: Arc<TokenValidator>,
        store: Arc<S>,
        clock: SharedClock,
        policy: BudgetPolicy,
        in_flight_max: usize,
        amount_minor_max: i64,
    ) -> TransferApi<S, P> {
        TransferApi {
            approver,
            tokens,
            store,
            clock: Arc::clone(&clock),
            policy,
            in_flight: Semaphore::new(in_flight_max),
            in_flight_max,
            amount_minor_max,
            gate: Gate::new(&AdmissionSection::default(), in_flight_max, clock),
        }
    }

    /// ApproveTransfer's admission control from `section` instead of the defaults.
    pub fn with_admission(mut self, section: &AdmissionSection) -> TransferApi<S, P> {
        self.gate = Gate::new(section, self.in_flight_max, Arc::clone(&self.clock));
        self
    }

    /// Refuses at once rather than queueing: a queued request would spend its budget
    /// waiting.
    fn admit(&self) -> Result<SemaphorePermit<'_>, Status> {
        self.in_flight.try_acquire().map_err(|_| {
            metrics::count_refusal(Refusal::InFlightMax);
            Status::resource_exhausted(format!(
                "too many requests in flight (in_flight_max = {}): retry shortly",
                self.in_flight_max
            ))
        })
    }

    /// The user the request's bearer token speaks for; UNAUTHENTICATED otherwise.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<AuthenticatedUser, Status> {
        self.tokens.validate_request(request).map_err(|why| {
            tracing::info!(%why, "request refused: not authenticated");
            Status::from(why)
        })
    }
}

/// NOT_FOUND for a transfer that is missing or not the caller's: the two must be
/// indistinguishable.
fn no_such_transfer(lookup: &Lookup) -> Status {
    match lookup {
        Lookup::TransferId(transfer_id) => {
            Status::not_found(format!("no transfer {transfer_id:?}"))
        }
        Lookup::IdempotencyKey {
            idempotency_key, ..
        } => Status::not_found(format!(
            "no transfer of yours under idempotency key {idempotency_key:?}"
        )),
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
        let user = self.authenticate(&request)?;
        let request = TransferRequest::parse(request.into_inner(), self.amount_minor_max)?;
        if request.user_id != user.user_id {
            tracing::warn!(token_user = ?user.user_id, "ApproveTransfer refused: user_id is not the token's subject");
            return Err(Status::permission_denied(NOT_YOUR_ACCOUNT_MSG));
        }
        let _user_slot = self.gate.enter_user(&request.user_id)?;
        let record = match self.approver.join_live(&request, &budget).await {
            Some(answer) => answer?,
            None => {
                let drive = self.gate.admit(&budget)?;
                let approved = self.approver.approve(request, budget).await;
                drive.end(&approved);
                let Approval { record, .. } = approved?;
                record
            }
        };
        metrics::count_transfer(&record);
        Ok(Response::new(ApproveTransferResponse {
            transfer: Some(convert::transfer_to_proto(&record)),
        }))
    }

    async fn get_transfer(
        &self,
        request: Request<GetTransferRequest>,
    ) -> Result<Response<GetTransferResponse>, Status> {
        let _permit = self.admit()?;
        let budget = Budget::new(
            self.policy,
            self.clock.now_ms(),
            client_timeout_ms(request.metadata()),
        );
        let user = self.authenticate(&request)?;
        let lookup = Lookup::try_from(request.into_inner())?;
        let found = match &lookup {
            Lookup::TransferId(transfer_id) => self.store.get(transfer_id).await,
            Lookup::IdempotencyKey {
                user_id,
                idempotency_key,
            } if *user_id == user.user_id => self.store.find_by_key(user_id, idempotency_key).await,
            Lookup::IdempotencyKey { .. } => Ok(None),
        }
        .map_err(|e| {
            let transfer_id = match &lookup {
                Lookup::TransferId(transfer_id) => Some(transfer_id.as_str()),
                Lookup::IdempotencyKey { .. } => None,
            };
            coordinator::store_status(&e, transfer_id, "retry later")
        })?;
        let record = found
            .filter(|record| record.user_id == user.user_id)
            .ok_or_else(|| no_such_transfer(&lookup))?;
        let record = self.approver.as_read(record, &budget).await?;
        Ok(Response::new(GetTransferResponse {
            transfer: Some(convert::transfer_to_proto(&record)),
        }))
    }
}
