//! The operator API: run a pass now, audit the transfers and the books.

use std::sync::Arc;

use banktransfer_api::reconciler::v1::reconciler_service_server::ReconcilerService as ReconcilerRpc;
use banktransfer_api::reconciler::v1::{
    AuditMismatch, AuditRequest, AuditResponse, RunPassRequest, RunPassResponse,
};
use coordinator::participants::Participants;
use coordinator::store::TransferStore;
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditError};
use crate::books::{BookReading, BooksError};
use crate::config::AUDIT_LIMIT_MAX;
use crate::findings;
use crate::pass::Reconciler;

pub struct ReconcilerApi<S, P> {
    reconciler: Arc<Reconciler<S, P>>,
    store: Arc<S>,
    participants: Arc<P>,
    audit_limit_default: u32,
    /// How an Audit reads both participants' books (and its calls' deadline).
    book_reading: BookReading,
}

impl<S, P> ReconcilerApi<S, P> {
    pub fn new(
        reconciler: Arc<Reconciler<S, P>>,
        store: Arc<S>,
        participants: Arc<P>,
        audit_limit_default: u32,
        book_reading: BookReading,
    ) -> ReconcilerApi<S, P> {
        ReconcilerApi {
            reconciler,
            store,
            participants,
            audit_limit_default,
            book_reading,
        }
    }
}

/// What the operator is told when the transfer log fails.
const STORE_RETRY: &str = "retry later";

/// An audit that could not finish, without the store's or the participant's own text
/// (logged here instead).
fn audit_status(err: &AuditError) -> Status {
    match err {
        AuditError::Store(store) | AuditError::Books(BooksError::Store(store)) => {
            coordinator::store_status(store, None, STORE_RETRY)
        }
        AuditError::Participant { transfer_id, error } => {
            tracing::warn!(transfer_id, error = ?error, "audit: a reservation could not be read");
            Status::unavailable(format!(
                "a participant did not answer for transfer {transfer_id}; retry the audit"
            ))
        }
        AuditError::Books(BooksError::Participant { leg, error }) => {
            tracing::warn!(leg = leg.name(), error = ?error, "audit: a book could not be read");
            Status::unavailable(format!(
                "the {} did not answer while its book was read; retry the audit",
                leg.name()
            ))
        }
    }
}

#[tonic::async_trait]
impl<S: TransferStore, P: Participants> ReconcilerRpc for ReconcilerApi<S, P> {
    async fn run_pass(
        &self,
        _request: Request<RunPassRequest>,
    ) -> Result<Response<RunPassResponse>, Status> {
        let report = self
            .reconciler
            .run_pass()
            .await
            .map_err(|e| coordinator::store_status(&e, None, STORE_RETRY))?;
        Ok(Response::new(RunPassResponse {
            transfers_examined: report.examined,
            transfers_aborted: report.aborted,
            transfers_succeeded: report.succeeded,
            transfers_failed: report.failed,
            transfers_retrying: report.retrying,
        }))
    }

    async fn audit(
        &self,
        request: Request<AuditRequest>,
    ) -> Result<Response<AuditResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => self.audit_limit_default,
            limit if limit > AUDIT_LIMIT_MAX => {
                return Err(Status::invalid_argument(format!(
                    "limit: at most {AUDIT_LIMIT_MAX} transfers per audit, got {limit}"
                )));
            }
            limit => limit,
        };
        let audited = audit::audit(&*self.store, &self.participants, limit, self.book_reading);
        let report = audited.await.map_err(|err| audit_status(&err))?;
        let (unmatched_reservations, unexplained_balances) =
            findings::replies(&report.books.findings);
        Ok(Response::new(AuditResponse {
            transfers_checked: report.checked,
            transfers_unfinished: report.unfinished,
            mismatches: report
                .mismatches
                .into_iter()
                .map(|(transfer_id, description)| AuditMismatch {
                    transfer_id,
                    description,
                })
                .collect(),
            reservations_checked: report.books.reservations_checked,
            accounts_checked: report.books.accounts_checked,
            unmatched_reservations,
            unexplained_balances,
            books_incomplete: report.books.incomplete,
        }))
    }
}
