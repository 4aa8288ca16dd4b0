//! The two participants of every transfer, as the coordinator calls them: reserve,
//! confirm, cancel, and (for the audit) read a reservation, or a whole book a page at a
//! time. [`Participants`] is the seam where tests and the simulator put scripted
//! participants; [`GrpcParticipants`] is the real thing (its listings' conversions are
//! in `listing.rs`).

mod grpc;
mod listing;

use std::future::Future;
use std::time::Duration;

use banktransfer_protocol::audit::{AccountStatement, BookReservation};
use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::{Leg, ReserveReply};

use crate::store::TransferRecord;

pub use grpc::{GrpcParticipants, refusal_code};

/// What a reserve asks one leg for. `transfer_id` is the idempotency key between
/// services: replaying the call is safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveTerms {
    pub transfer_id: String,
    pub user_id: String,
    pub account_id: String,
    pub amount: Money,
}

impl ReserveTerms {
    /// The external leg reserves on the source account, the internal leg on the
    /// destination account.
    pub fn for_leg(record: &TransferRecord, leg: Leg) -> ReserveTerms {
        let account_id = match leg {
            Leg::External => &record.external_account_id,
            Leg::BalanceStore => &record.internal_account_id,
        };
        ReserveTerms {
            transfer_id: record.transfer_id.clone(),
            user_id: record.user_id.clone(),
            account_id: account_id.clone(),
            amount: record.amount,
        }
    }
}

/// What a participant holds for a transfer (the audit compares it with the log).
pub use banktransfer_protocol::audit::ReservationView;

/// One page of a participant's book, as ListReservations and ListAccounts answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub entries: Vec<T>,
    /// Where the next page starts; "" on the last page.
    pub next_page_token: String,
}

/// A call that did not get the answer it needed (error status, wrong state, timeout).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CallError(pub String);

/// Both participants. Every call carries `timeout` as its deadline; the driver also
/// stops waiting at that deadline, whatever the implementation does.
pub trait Participants: Send + Sync + 'static {
    /// Never an error: anything but a clear answer is [`ReserveReply::Unknown`].
    fn reserve(
        &self,
        leg: Leg,
        terms: &ReserveTerms,
        timeout: Duration,
    ) -> impl Future<Output = ReserveReply> + Send;

    /// Ok once the leg's reservation is CONFIRMED.
    fn confirm(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Ok once the leg holds nothing for the transfer (CANCELLED, or REFUSED).
    fn cancel(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    fn get_reservation(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ReservationView, CallError>> + Send;

    /// One page of `leg`'s reservations, whatever their status, in transfer id order:
    /// at most `page_size` (1 to `banktransfer_protocol::audit::BOOK_PAGE_SIZE_MAX`),
    /// starting at `page_token` ("" for the first page, else the token the page before
    /// returned).
    fn list_reservations(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Page<BookReservation>, CallError>> + Send;

    /// One page of `leg`'s accounts in account id order, each with what explains its
    /// balances; paged as [`Participants::list_reservations`].
    fn list_accounts(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Page<AccountStatement>, CallError>> + Send;
}
