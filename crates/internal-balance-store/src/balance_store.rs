//! The BalanceStore gRPC service: the shared participant handlers on the credit side,
//! with the balance store's screening inside every new reserve.

use banktransfer_api::ledger::v1::balance_store_server::BalanceStore;
use banktransfer_api::reservation::v1 as pb;
use participant::grpc::Participant;
use participant::{ReservationBook, ReservationStore};
use tonic::{Request, Response, Status};

use crate::screening::LedgerScreening;

pub type Book = ReservationStore<LedgerScreening>;

/// Over the SQL book in the service; over an in-memory one in the simulation.
pub struct BalanceStoreService<B = Book> {
    participant: Participant<B>,
}

impl<B: ReservationBook> BalanceStoreService<B> {
    pub fn new(participant: Participant<B>) -> BalanceStoreService<B> {
        BalanceStoreService { participant }
    }
}

#[tonic::async_trait]
impl<B: ReservationBook> BalanceStore for BalanceStoreService<B> {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        self.participant
            .reserve(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        self.participant
            .confirm(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        self.participant
            .cancel(request.into_inner())
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
