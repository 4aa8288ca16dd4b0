//! gRPC clients for every service, each call with a deadline, and [`Transfers`]: the
//! public API as tests use it, remembering every transfer it asked for so that the
//! invariant checker can look them all up.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banktransfer_api::balance_store::v1::balance_store_service_client::BalanceStoreServiceClient;
use banktransfer_api::external::v1::external_institution_service_client::ExternalInstitutionServiceClient;
use banktransfer_api::external::v1::fault_injection_service_client::FaultInjectionServiceClient;
use banktransfer_api::external::v1::{
    ClearFaultsRequest, Fault, FaultKind, InjectFaultRequest, ListFaultsRequest, Operation,
};
use banktransfer_api::gateway::v1::get_transfer_request::Lookup;
use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, GetTransferRequest, IdempotencyKeyLookup, Transfer, TransferStatus,
};
use banktransfer_api::money::v1::Money;
use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_api::reservation::v1::{Account, GetReservationRequest, Reservation};
use banktransfer_api::{balance_store::v1 as balance_store_pb, external::v1 as external_pb};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Deadline of every harness call (the gateway answers far sooner: its budget is 200 ms).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connected channel to `127.0.0.1:port`; it reconnects after a restart.
pub fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// `message` with the harness deadline.
pub fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

pub fn usd(minor_units: i64) -> Money {
    Money {
        minor_units,
        currency: "USD".to_owned(),
    }
}

/// Clients of every service of one cluster. Both participants serve the same
/// `ReservationService`; each has its own account service.
#[derive(Clone, Debug)]
pub struct Clients {
    pub gateway: TransferServiceClient<Channel>,
    pub external_reservations: ReservationServiceClient<Channel>,
    pub external_accounts: ExternalInstitutionServiceClient<Channel>,
    pub faults: FaultInjectionServiceClient<Channel>,
    pub balance_store_reservations: ReservationServiceClient<Channel>,
    pub balance_store_accounts: BalanceStoreServiceClient<Channel>,
    pub reconciler: ReconcilerServiceClient<Channel>,
}

impl Clients {
    pub fn new(gateway: u16, external: u16, balance_store: u16, reconciler: u16) -> Clients {
        Clients {
            gateway: TransferServiceClient::new(channel(gateway)),
            external_reservations: ReservationServiceClient::new(channel(external)),
            external_accounts: ExternalInstitutionServiceClient::new(channel(external)),
            faults: FaultInjectionServiceClient::new(channel(external)),
            balance_store_reservations: ReservationServiceClient::new(channel(balance_store)),
            balance_store_accounts: BalanceStoreServiceClient::new(channel(balance_store)),
            reconciler: ReconcilerServiceClient::new(channel(reconciler)),
        }
    }

    pub async fn external_account(&self, account_id: &str) -> Result<Account, Status> {
        let response = self
            .external_accounts
            .clone()
            .get_account(request(external_pb::GetAccountRequest {
                account_id: account_id.to_owned(),
            }))
            .await?;
        account_of(response.into_inner().account)
    }

    pub async fn internal_account(&self, account_id: &str) -> Result<Account, Status> {
        let response = self
            .balance_store_accounts
            .clone()
            .get_account(request(balance_store_pb::GetAccountRequest {
                account_id: account_id.to_owned(),
            }))
            .await?;
        account_of(response.into_inner().account)
    }

    pub async fn external_reservation(&self, transfer_id: &str) -> Result<Reservation, Status> {
        reservation_at(&self.external_reservations, transfer_id).await
    }

    pub async fn internal_reservation(&self, transfer_id: &str) -> Result<Reservation, Status> {
        reservation_at(&self.balance_store_reservations, transfer_id).await
    }

    /// Makes the external institution misbehave on `operation` for `calls` calls (0: until
    /// cleared).
    pub async fn inject_fault(
        &self,
        operation: Operation,
        kind: FaultKind,
        latency_ms: u32,
        calls: u32,
    ) {
        self.faults
            .clone()
            .inject_fault(request(InjectFaultRequest {
                operation: operation.into(),
                kind: kind.into(),
                latency_ms,
                calls,
            }))
            .await
            .unwrap_or_else(|status| panic!("InjectFault {operation:?} {kind:?}: {status}"));
    }

    /// The faults still armed at the institution.
    pub async fn faults_armed(&self) -> Vec<Fault> {
        self.faults
            .clone()
            .list_faults(request(ListFaultsRequest {}))
            .await
            .unwrap_or_else(|status| panic!("ListFaults: {status}"))
            .into_inner()
            .faults
    }

    /// Waits until every fault injected for a limited number of calls has fired.
    pub async fn wait_faults_fired(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let armed = self.faults_armed().await;
            if armed.iter().all(|f| f.remaining_calls == 0) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "faults still armed after {timeout:?}: {armed:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn clear_faults(&self) {
        self.faults
            .clone()
            .clear_faults(request(ClearFaultsRequest {}))
            .await
            .unwrap_or_else(|status| panic!("ClearFaults: {status}"));
    }
}

fn account_of(account: Option<Account>) -> Result<Account, Status> {
    account.ok_or_else(|| Status::internal("GetAccount answered without an account"))
}

/// The reservation of `transfer_id` at the participant `client` calls.
async fn reservation_at(
    client: &ReservationServiceClient<Channel>,
    transfer_id: &str,
) -> Result<Reservation, Status> {
    let response = client
        .clone()
        .get_reservation(request(GetReservationRequest {
            transfer_id: transfer_id.to_owned(),
        }))
        .await?;
    response
        .into_inner()
        .reservation
        .ok_or_else(|| Status::internal("GetReservation answered without a reservation"))
}

/// How a test names a transfer: the client's own key, which works even when the gateway
/// never answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransferKey {
    pub user_id: String,
    pub idempotency_key: String,
}

/// One ApproveTransfer request.
#[derive(Clone, Debug)]
pub struct TransferRequest {
    pub idempotency_key: String,
    pub user_id: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    pub amount_minor: i64,
    pub currency: String,
}

impl TransferRequest {
    /// `user` moves `amount_minor` USD from `ext-<user>` to `int-<user>`, with a fresh key.
    pub fn new(user: &str, amount_minor: i64) -> TransferRequest {
        TransferRequest::between(
            user,
            &format!("ext-{user}"),
            &format!("int-{user}"),
            amount_minor,
        )
    }

    pub fn between(
        user: &str,
        external: &str,
        internal: &str,
        amount_minor: i64,
    ) -> TransferRequest {
        TransferRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            user_id: user.to_owned(),
            external_account_id: external.to_owned(),
            internal_account_id: internal.to_owned(),
            amount_minor,
            currency: "USD".to_owned(),
        }
    }

    pub fn key(&self) -> TransferKey {
        TransferKey {
            user_id: self.user_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }

    pub fn to_proto(&self) -> ApproveTransferRequest {
        ApproveTransferRequest {
            idempotency_key: self.idempotency_key.clone(),
            user_id: self.user_id.clone(),
            external_account_id: self.external_account_id.clone(),
            internal_account_id: self.internal_account_id.clone(),
            amount: Some(Money {
                minor_units: self.amount_minor,
                currency: self.currency.clone(),
            }),
        }
    }
}

/// The public TransferService, remembering every key it was asked to approve.
#[derive(Clone, Debug)]
pub struct Transfers {
    client: TransferServiceClient<Channel>,
    made: Arc<Mutex<Vec<TransferKey>>>,
}

impl Transfers {
    pub fn new(client: TransferServiceClient<Channel>) -> Transfers {
        Transfers {
            client,
            made: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every transfer asked for so far (each key once).
    pub fn made(&self) -> Vec<TransferKey> {
        self.made.lock().expect("transfer list").clone()
    }

    fn remember(&self, key: TransferKey) {
        let mut made = self.made.lock().expect("transfer list");
        if !made.contains(&key) {
            made.push(key);
        }
    }

    /// ApproveTransfer; the key is remembered before the call is sent.
    pub async fn approve(&self, req: &TransferRequest) -> Result<Transfer, Status> {
        self.remember(req.key());
        let response = self
            .client
            .clone()
            .approve_transfer(request(req.to_proto()))
            .await?;
        response
            .into_inner()
            .transfer
            .ok_or_else(|| Status::internal("ApproveTransfer answered without a transfer"))
    }

    /// ApproveTransfer that must answer; the elapsed time comes with the transfer.
    pub async fn approve_ok(&self, req: &TransferRequest) -> (Transfer, Duration) {
        let started = Instant::now();
        let transfer = self
            .approve(req)
            .await
            .unwrap_or_else(|status| panic!("ApproveTransfer {req:?} failed: {status:?}"));
        (transfer, started.elapsed())
    }

    pub async fn get_by_id(&self, transfer_id: &str) -> Result<Transfer, Status> {
        self.get(Lookup::TransferId(transfer_id.to_owned())).await
    }

    pub async fn get_by_key(&self, key: &TransferKey) -> Result<Transfer, Status> {
        self.get(Lookup::IdempotencyKey(IdempotencyKeyLookup {
            user_id: key.user_id.clone(),
            idempotency_key: key.idempotency_key.clone(),
        }))
        .await
    }

    async fn get(&self, lookup: Lookup) -> Result<Transfer, Status> {
        let response = self
            .client
            .clone()
            .get_transfer(request(GetTransferRequest {
                lookup: Some(lookup),
            }))
            .await?;
        response
            .into_inner()
            .transfer
            .ok_or_else(|| Status::internal("GetTransfer answered without a transfer"))
    }

    /// Polls GetTransfer (by key) until the transfer has `status`; errors on the way (a
    /// gateway being restarted) are retried. Panics with the last thing seen on timeout.
    pub async fn wait_for_status(
        &self,
        key: &TransferKey,
        status: TransferStatus,
        timeout: Duration,
    ) -> Transfer {
        let started = Instant::now();
        loop {
            let last = self.get_by_key(key).await;
            if let Ok(transfer) = &last
                && transfer.status() == status
            {
                return transfer.clone();
            }
            assert!(
                started.elapsed() < timeout,
                "transfer {key:?} did not become {status:?} within {timeout:?}; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the transfer is no longer PROCESSING.
    pub async fn wait_until_final(&self, key: &TransferKey, timeout: Duration) -> Transfer {
        let started = Instant::now();
        loop {
            let last = self.get_by_key(key).await;
            if let Ok(transfer) = &last
                && transfer.status() != TransferStatus::Processing
            {
                return transfer.clone();
            }
            assert!(
                started.elapsed() < timeout,
                "transfer {key:?} still not final after {timeout:?}; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
