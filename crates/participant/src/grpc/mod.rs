//! The gRPC layer both participants share: [`Participant`], the handler logic (parse the
//! request once, in [`convert`], ask the book, map the outcome to a reply or a status
//! code, and log it inside a `reservation` span carrying the transfer id), and in
//! [`services`] the generated service traits over it: `ReservationService`, which both
//! participants serve, and each participant's own account service. The audit's reads of
//! a whole book (ListReservations, ListAccounts) are in `listing.rs`, their pages in
//! [`paging`].
//!
//! Outcome -> reply:
//! - a recorded or replayed reservation -> OK with it (HELD, CONFIRMED, CANCELLED, or
//!   REFUSED with its reason: a business refusal is an answer, not an error);
//! - the transfer id reused with other terms -> ALREADY_EXISTS;
//! - confirm/cancel not allowed in the current state -> FAILED_PRECONDITION;
//! - unknown reservation or account on a read -> NOT_FOUND;
//! - a page size over the bound or a page token not issued here -> INVALID_ARGUMENT;
//! - storage unreachable -> UNAVAILABLE; any other storage error -> INTERNAL.

pub mod convert;
mod errors;
mod listing;
pub mod paging;
pub mod services;

use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_protocol::reservation::{
    Reservation, ReservationStatus, ReserveOutcome, SettleOutcome,
};
use service_kit::clock::SharedClock;
use tonic::Status;
use tracing::Instrument;

use crate::book::{OpenOutcome, ReservationBook};
use errors::storage_status;
pub use services::{
    AccountsApi, CallGate, NoGate, Operation, ReservationApi, routes, service_names,
};

/// The handlers of one participant, over any [`ReservationBook`].
pub struct Participant<B> {
    book: B,
    clock: SharedClock,
}

impl<B: ReservationBook> Participant<B> {
    pub fn new(book: B, clock: SharedClock) -> Participant<B> {
        Participant { book, clock }
    }

    pub fn book(&self) -> &B {
        &self.book
    }

    /// Now, in epoch milliseconds (the one time type; the SQL store converts at its
    /// boundary).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub async fn reserve(
        &self,
        request: pb::ReserveRequest,
    ) -> Result<pb::ReserveResponse, Status> {
        // Checked before anything is logged: the span carries a valid id only.
        let (transfer_id, terms) = convert::reserve_request(request).inspect_err(log_invalid)?;
        let span = tracing::info_span!("reservation", transfer_id = %transfer_id);
        async move {
            let outcome = self
                .book
                .reserve(&transfer_id, terms, self.now_ms())
                .await
                .map_err(storage_status)?;
            let reservation = match outcome {
                ReserveOutcome::Record { reservation, .. } => {
                    log_answer("reserve recorded", &reservation);
                    reservation
                }
                ReserveOutcome::Replay(reservation) => {
                    log_answer("reserve replayed", &reservation);
                    reservation
                }
                ReserveOutcome::Conflict(why) => {
                    tracing::warn!(?why, "reserve conflicts with the recorded terms");
                    return Err(Status::already_exists(why));
                }
            };
            Ok(pb::ReserveResponse {
                reservation: Some(convert::reservation(&reservation)),
            })
        }
        .instrument(span)
        .await
    }

    pub async fn confirm(
        &self,
        request: pb::ConfirmRequest,
    ) -> Result<pb::ConfirmResponse, Status> {
        let reservation = self
            .settle(Settlement::Confirm, request.transfer_id)
            .await?;
        Ok(pb::ConfirmResponse {
            reservation: Some(reservation),
        })
    }

    pub async fn cancel(&self, request: pb::CancelRequest) -> Result<pb::CancelResponse, Status> {
        let reservation = self.settle(Settlement::Cancel, request.transfer_id).await?;
        Ok(pb::CancelResponse {
            reservation: Some(reservation),
        })
    }

    /// A confirm or a cancel: the same steps, the book's own decision.
    async fn settle(
        &self,
        settlement: Settlement,
        transfer_id: String,
    ) -> Result<pb::Reservation, Status> {
        let transfer_id = convert::id("transfer_id", transfer_id).inspect_err(log_invalid)?;
        let span = tracing::info_span!("reservation", transfer_id = %transfer_id);
        async move {
            let now_ms = self.now_ms();
            let (name, outcome) = match settlement {
                Settlement::Confirm => ("confirm", self.book.confirm(&transfer_id, now_ms).await),
                Settlement::Cancel => ("cancel", self.book.cancel(&transfer_id, now_ms).await),
            };
            let reservation = settled(name, outcome.map_err(storage_status)?)?;
            Ok(convert::reservation(&reservation))
        }
        .instrument(span)
        .await
    }

    pub async fn get_reservation(
        &self,
        request: pb::GetReservationRequest,
    ) -> Result<pb::GetReservationResponse, Status> {
        let transfer_id =
            convert::id("transfer_id", request.transfer_id).inspect_err(log_invalid)?;
        let span = tracing::info_span!("reservation", transfer_id = %transfer_id);
        async move {
            let reservation = self
                .book
                .get_reservation(&transfer_id)
                .await
                .map_err(storage_status)?
                .ok_or_else(|| {
                    Status::not_found(format!("no reservation for transfer {transfer_id}"))
                })?;
            tracing::debug!(status = reservation.status.as_str(), "reservation read");
            Ok(pb::GetReservationResponse {
                reservation: Some(convert::reservation(&reservation)),
            })
        }
        .instrument(span)
        .await
    }

    /// OpenAccount, for either participant's own account service: the request's fields,
    /// the account it answers with.
    pub async fn open_account(
        &self,
        account_id: String,
        user_id: String,
        opening_balance: Option<money_pb::Money>,
    ) -> Result<pb::Account, Status> {
        let account =
            convert::new_account(account_id, user_id, opening_balance).inspect_err(log_invalid)?;
        let span = tracing::info_span!("account", account_id = %account.account_id);
        async move {
            let outcome = self
                .book
                .open_account(account, self.now_ms())
                .await
                .map_err(storage_status)?;
            let account = match outcome {
                OpenOutcome::Opened(account) => {
                    tracing::info!(
                        available_minor = account.balance.available_minor,
                        "account opened"
                    );
                    account
                }
                OpenOutcome::Existing(account) => {
                    tracing::info!("account already open: returned unchanged");
                    account
                }
                OpenOutcome::Conflict(why) => {
                    tracing::warn!(?why, "account id taken");
                    return Err(Status::already_exists(why));
                }
            };
            Ok(convert::account(&account))
        }
        .instrument(span)
        .await
    }

    /// GetAccount, for either participant's own account service.
    pub async fn get_account(&self, account_id: String) -> Result<pb::Account, Status> {
        let account_id = convert::id("account_id", account_id).inspect_err(log_invalid)?;
        let span = tracing::info_span!("account", account_id = %account_id);
        async move {
            let account = self
                .book
                .get_account(&account_id)
                .await
                .map_err(storage_status)?
                .ok_or_else(|| Status::not_found(format!("no account {account_id}")))?;
            Ok(convert::account(&account))
        }
        .instrument(span)
        .await
    }
}

/// The two calls that settle a reservation.
#[derive(Clone, Copy)]
enum Settlement {
    Confirm,
    Cancel,
}

/// The answer to a confirm or a cancel.
fn settled(operation: &'static str, outcome: SettleOutcome) -> Result<Reservation, Status> {
    match outcome {
        SettleOutcome::Apply { reservation, .. } | SettleOutcome::Record(reservation) => {
            tracing::info!(
                operation,
                status = reservation.status.as_str(),
                "reservation settled"
            );
            Ok(reservation)
        }
        SettleOutcome::Replay(reservation) => {
            tracing::info!(
                operation,
                status = reservation.status.as_str(),
                "replayed: nothing changed"
            );
            Ok(reservation)
        }
        SettleOutcome::Reject(why) => {
            tracing::warn!(operation, ?why, "rejected in the current state");
            Err(Status::failed_precondition(why))
        }
    }
}

fn log_answer(message: &'static str, reservation: &Reservation) {
    match &reservation.status {
        ReservationStatus::Refused(refusal) => {
            tracing::info!(
                status = "refused",
                reason = refusal.reason.as_str(),
                why = ?refusal.message,
                "{message}"
            );
        }
        status => tracing::info!(status = status.as_str(), "{message}"),
    }
}

/// The message names the field and never holds the bad value (`convert` sees to it);
/// Debug escapes it all the same.
fn log_invalid(status: &Status) {
    tracing::info!(why = ?status.message(), "invalid request");
}
