//! The audit's reads of a whole book, a page at a time: ListReservations and
//! ListAccounts. Each page is read with one entry more than asked, which tells whether
//! another page follows ([`paging::finish`]).

use banktransfer_api::reservation::v1 as pb;
use tonic::Status;
use tracing::Instrument;

use super::paging::{self, Listing};
use super::{Participant, convert, log_invalid};
use crate::book::ReservationBook;
use crate::grpc::errors::storage_status;

impl<B: ReservationBook> Participant<B> {
    pub async fn list_reservations(
        &self,
        request: pb::ListReservationsRequest,
    ) -> Result<pb::ListReservationsResponse, Status> {
        let span = tracing::info_span!("listing", listing = "reservations");
        async move {
            let listing = Listing::Reservations;
            let page = paging::page(listing, request.page_size, &request.page_token)
                .inspect_err(log_invalid)?;
            let mut reservations = self
                .book
                .list_reservations(page.after.as_deref(), page.size + 1)
                .await
                .map_err(storage_status)?;
            let next_page_token =
                paging::finish(listing, &page, &mut reservations, |r| &r.transfer_id);
            tracing::debug!(count = reservations.len(), "reservations listed");
            Ok(pb::ListReservationsResponse {
                reservations: reservations.iter().map(convert::reservation).collect(),
                next_page_token,
            })
        }
        .instrument(span)
        .await
    }

    pub async fn list_accounts(
        &self,
        request: pb::ListAccountsRequest,
    ) -> Result<pb::ListAccountsResponse, Status> {
        let span = tracing::info_span!("listing", listing = "accounts");
        async move {
            let listing = Listing::Accounts;
            let page = paging::page(listing, request.page_size, &request.page_token)
                .inspect_err(log_invalid)?;
            let mut accounts = self
                .book
                .list_accounts(page.after.as_deref(), page.size + 1)
                .await
                .map_err(storage_status)?;
            let next_page_token = paging::finish(listing, &page, &mut accounts, |a| &a.account_id);
            tracing::debug!(count = accounts.len(), "accounts listed");
            Ok(pb::ListAccountsResponse {
                accounts: accounts.iter().map(convert::account_statement).collect(),
                next_page_token,
            })
        }
        .instrument(span)
        .await
    }
}
