//! The generated service traits over [`Participant`], written once for both participants:
//! - [`ReservationApi`]: `banktransfer.reservation.v1.ReservationService`, which both
//!   serve, only to the coordinator's identities (client certificates of the gateway and
//!   the reconciler). Reserve, confirm and cancel pass through a [`CallGate`] first:
//!   [`NoGate`] in production, the injected faults in the mock external institution; the
//!   reads (GetReservation, and the audit's ListReservations and ListAccounts) never do.
//! - [`AccountsApi`]: each participant's own account service
//!   (`banktransfer.external.v1.ExternalInstitutionService`,
//!   `banktransfer.balance_store.v1.BalanceStoreService`): the same two calls over
//!   messages of the same shape in two packages.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::balance_store::v1::balance_store_service_server::BalanceStoreServiceServer;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_server::ExternalInstitutionServiceServer;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_api::reservation::v1::reservation_service_server::{
    ReservationService, ReservationServiceServer,
};
use banktransfer_protocol::reservation::Side;
use service_kit::authz::{authorize, require_identities};
use service_kit::tls::{ACCOUNT_READER_IDENTITIES, COORDINATOR_IDENTITIES, OPERATOR_IDENTITIES};
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::Participant;
use crate::book::ReservationBook;

/// The routes of one participant: `ReservationService` behind `gate`, and the side's own
/// account service (the debit side is the external institution, the credit side our
/// balance store).
pub fn routes<B: ReservationBook, G: CallGate>(
    participant: Participant<B>,
    side: Side,
    gate: G,
) -> Routes {
    let participant = Arc::new(participant);
    let accounts = AccountsApi::new(Arc::clone(&participant));
    // Every reservation method moves or reveals money: the coordinator's identities only.
    let reservations = InterceptedService::new(
        service_kit::limit!(ReservationServiceServer::new(ReservationApi::new(
            participant,
            gate
        ))),
        require_identities(COORDINATOR_IDENTITIES),
    );
    match side {
        Side::Debit => Routes::new(reservations).add_service(service_kit::limit!(
            ExternalInstitutionServiceServer::new(accounts)
        )),
        Side::Credit => Routes::new(reservations).add_service(service_kit::limit!(
            BalanceStoreServiceServer::new(accounts)
        )),
    }
}

/// The fully qualified names of the services [`routes`] serves, for health and
/// reflection.
pub fn service_names(side: Side) -> [&'static str; 2] {
    use banktransfer_api::balance_store::v1::balance_store_service_server as balance_store;
    use banktransfer_api::external::v1::external_institution_service_server as external;
    use banktransfer_api::reservation::v1::reservation_service_server as reservation;
    match side {
        Side::Debit => [reservation::SERVICE_NAME, external::SERVICE_NAME],
        Side::Credit => [reservation::SERVICE_NAME, balance_store::SERVICE_NAME],
    }
}

/// A reservation call that changes state, which a [`CallGate`] may delay or fail (reads
/// never pass a gate, so tests can always look at the state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Reserve,
    Confirm,
    Cancel,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Reserve => "reserve",
            Operation::Confirm => "confirm",
            Operation::Cancel => "cancel",
        })
    }
}

/// What stands between a reserve, confirm or cancel and the book.
pub trait CallGate: Send + Sync + 'static {
    /// Runs `apply` (the operation, on a future of its own so that it may outlive the
    /// caller) as the gate decides, and answers for it.
    fn pass<T: Send + 'static>(
        &self,
        operation: Operation,
        transfer_id: &str,
        apply: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> impl Future<Output = Result<T, Status>> + Send;
}

/// Every call goes straight through.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoGate;

impl CallGate for NoGate {
    async fn pass<T: Send + 'static>(
        &self,
        _operation: Operation,
        _transfer_id: &str,
        apply: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        apply.await
    }
}

/// The transfer id a gate sees (and may log): checked first, so that neither a gate nor
/// an injected fault ever meets an invalid one.
fn gate_id(transfer_id: &str) -> Result<String, Status> {
    super::convert::id("transfer_id", transfer_id.to_owned()).inspect_err(super::log_invalid)
}

/// `ReservationService` over the participant's handlers, behind `gate`.
pub struct ReservationApi<B, G = NoGate> {
    participant: Arc<Participant<B>>,
    gate: G,
}

impl<B: ReservationBook, G: CallGate> ReservationApi<B, G> {
    pub fn new(participant: Arc<Participant<B>>, gate: G) -> ReservationApi<B, G> {
        ReservationApi { participant, gate }
    }
}

#[tonic::async_trait]
impl<B: ReservationBook, G: CallGate> ReservationService for ReservationApi<B, G> {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = gate_id(&request.transfer_id)?;
        let participant = Arc::clone(&self.participant);
        let apply = async move { participant.reserve(request).await };
        let gated = self.gate.pass(Operation::Reserve, &transfer_id, apply);
        gated.await.map(Response::new)
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = gate_id(&request.transfer_id)?;
        let participant = Arc::clone(&self.participant);
        let apply = async move { participant.confirm(request).await };
        let gated = self.gate.pass(Operation::Confirm, &transfer_id, apply);
        gated.await.map(Response::new)
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let request = request.into_inner();
        let transfer_id = gate_id(&request.transfer_id)?;
        let participant = Arc::clone(&self.participant);
        let apply = async move { participant.cancel(request).await };
        let gated = self.gate.pass(Operation::Cancel, &transfer_id, apply);
        gated.await.map(Response::new)
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

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        self.participant
            .list_reservations(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        self.participant
            .list_accounts(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// A participant's own account service over its handlers: OpenAccount (operators only: it
/// creates money) and GetAccount (operators and the reconciler's audit).
pub struct AccountsApi<B> {
    participant: Arc<Participant<B>>,
}

impl<B: ReservationBook> AccountsApi<B> {
    pub fn new(participant: Arc<Participant<B>>) -> AccountsApi<B> {
        AccountsApi { participant }
    }
}

/// The two account services differ only in their package: one body serves both.
macro_rules! accounts_service {
    ($package:ident :: $server:ident :: $service:ident) => {
        #[tonic::async_trait]
        impl<B: ReservationBook> $package::$server::$service for AccountsApi<B> {
            async fn open_account(
                &self,
                request: Request<$package::OpenAccountRequest>,
            ) -> Result<Response<$package::OpenAccountResponse>, Status> {
                authorize(&request, OPERATOR_IDENTITIES)?;
                let request = request.into_inner();
                let opened = self.participant.open_account(
                    request.account_id,
                    request.user_id,
                    request.opening_balance,
                );
                let account = Some(opened.await?);
                Ok(Response::new($package::OpenAccountResponse { account }))
            }

            async fn get_account(
                &self,
                request: Request<$package::GetAccountRequest>,
            ) -> Result<Response<$package::GetAccountResponse>, Status> {
                authorize(&request, ACCOUNT_READER_IDENTITIES)?;
                let account_id = request.into_inner().account_id;
                let account = Some(self.participant.get_account(account_id).await?);
                Ok(Response::new($package::GetAccountResponse { account }))
            }
        }
    };
}

accounts_service!(external_pb::external_institution_service_server::ExternalInstitutionService);
accounts_service!(balance_store_pb::balance_store_service_server::BalanceStoreService);
