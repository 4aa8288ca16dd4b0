//! gRPC clients for every service, over TLS as the identity each call needs, each call
//! with a deadline; and [`Transfers`]: the public API as tests use it (with a bearer token
//! for the request's user), remembering every transfer it asked for so that the invariant
//! checker can look them all up.

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
use service_kit::jwt::AUTHORIZATION_HEADER;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::config::Endpoints;
use crate::health;
use crate::pki::{Caller, ClusterPki, bearer};
use crate::service::Service;

/// Deadline of every harness call (the gateway answers sooner: its budget is 3 s, 200 ms
/// in a `timed` cluster).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh connection gets (TCP and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`Clients::warm`] keeps trying to connect a channel to a SERVING service.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connected TLS channel to `127.0.0.1:port`; it reconnects after a restart.
pub fn channel(port: u16, tls: ClientTlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("valid endpoint")
        .tls_config(tls)
        .expect("a valid TLS configuration")
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy()
}

/// A lazily connected channel to `127.0.0.1:port` *without* TLS: what an attacker or a
/// misconfigured client would use. Every BankTransfer port must refuse it.
pub fn plaintext_channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid endpoint")
        .connect_timeout(CONNECT_TIMEOUT)
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

/// Clients of every service of one cluster, each as the identity its calls need. Both
/// participants serve the same `ReservationService`; each has its own account service.
#[derive(Clone, Debug)]
pub struct Clients {
    /// No client certificate, as a mobile client: its calls need a bearer token, which
    /// [`Transfers`] adds.
    pub gateway: TransferServiceClient<Channel>,
    /// As the reconciler: the harness reads reservations as the auditor does.
    pub external_reservations: ReservationServiceClient<Channel>,
    /// As the operator, as are the faults, the other account service and the reconciler.
    pub external_accounts: ExternalInstitutionServiceClient<Channel>,
    pub faults: FaultInjectionServiceClient<Channel>,
    pub balance_store_reservations: ReservationServiceClient<Channel>,
    pub balance_store_accounts: BalanceStoreServiceClient<Channel>,
    pub reconciler: ReconcilerServiceClient<Channel>,
    /// Every channel above, by the service it goes to and who it calls as.
    channels: Vec<(Service, Caller, Channel)>,
}

impl Clients {
    pub fn new(endpoints: &Endpoints, pki: &ClusterPki) -> Clients {
        let mut channels = Vec::new();
        let mut open = |service: Service, caller: Caller| {
            let channel = channel(endpoints.port(service), pki.client_tls(caller));
            channels.push((service, caller, channel.clone()));
            channel
        };
        let gateway = open(Service::Gateway, Caller::NoCertificate);
        let external_auditor = open(Service::External, Caller::Service(Service::Reconciler));
        let external_operator = open(Service::External, Caller::Operator);
        let balance_store_auditor =
            open(Service::BalanceStore, Caller::Service(Service::Reconciler));
        let balance_store_operator = open(Service::BalanceStore, Caller::Operator);
        let reconciler = open(Service::Reconciler, Caller::Operator);
        Clients {
            gateway: TransferServiceClient::new(gateway),
            external_reservations: ReservationServiceClient::new(external_auditor),
            external_accounts: ExternalInstitutionServiceClient::new(external_operator.clone()),
            faults: FaultInjectionServiceClient::new(external_operator),
            balance_store_reservations: ReservationServiceClient::new(balance_store_auditor),
            balance_store_accounts: BalanceStoreServiceClient::new(balance_store_operator),
            reconciler: ReconcilerServiceClient::new(reconciler),
            channels,
        }
    }

    /// Connects every channel to `service` (TCP and the TLS handshake) with one health
    /// check each, so that the first call of a test does not pay for the handshake: a
    /// test that times a call times the service, not the connection set-up.
    ///
    /// A channel whose old connection died with a restarted service may fail its first
    /// call while it reconnects: each check is retried for up to [`WARM_TIMEOUT`].
    pub async fn warm(&self, service: Service) -> Result<(), String> {
        for (to, caller, channel) in &self.channels {
            if *to != service {
                continue;
            }
            let started = Instant::now();
            while let Err(e) = health::check_on(channel.clone(), CALL_TIMEOUT).await {
                if started.elapsed() >= WARM_TIMEOUT {
                    return Err(format!(
                        "the channel to {service} as {caller:?} did not connect within \
                         {WARM_TIMEOUT:?}: {e}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
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

/// How a call to the public TransferService authenticates (its `authorization` header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// A valid token for this user, signed with the cluster's token key.
    User(String),
    /// This exact header value (a crafted, expired or foreign token).
    Header(String),
    /// No `authorization` header.
    Missing,
}

impl Auth {
    pub fn user(user_id: &str) -> Auth {
        Auth::User(user_id.to_owned())
    }
}

/// The public TransferService, remembering every key it was asked to approve.
#[derive(Clone, Debug)]
pub struct Transfers {
    client: TransferServiceClient<Channel>,
    pki: Arc<ClusterPki>,
    made: Arc<Mutex<Vec<TransferKey>>>,
}

impl Transfers {
    /// `client` connects without a client certificate; each call carries the token `pki`
    /// mints for its user.
    pub fn new(client: TransferServiceClient<Channel>, pki: Arc<ClusterPki>) -> Transfers {
        Transfers {
            client,
            pki,
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

    /// `message` with the harness deadline and `auth`'s `authorization` header.
    fn authorized<T>(&self, auth: &Auth, message: T) -> Request<T> {
        let mut request = request(message);
        let value = match auth {
            Auth::User(user_id) => Some(bearer(&self.pki.token(user_id))),
            Auth::Header(value) => Some(
                value
                    .parse()
                    .unwrap_or_else(|e| panic!("{value:?} is not a valid header value: {e}")),
            ),
            Auth::Missing => None,
        };
        if let Some(value) = value {
            request.metadata_mut().insert(AUTHORIZATION_HEADER, value);
        }
        request
    }

    /// ApproveTransfer as the request's user; the key is remembered before the call is
    /// sent.
    pub async fn approve(&self, req: &TransferRequest) -> Result<Transfer, Status> {
        self.approve_as(&Auth::User(req.user_id.clone()), req).await
    }

    /// ApproveTransfer authenticated by `auth`, whoever the request names.
    pub async fn approve_as(&self, auth: &Auth, req: &TransferRequest) -> Result<Transfer, Status> {
        self.approve_message_as(auth, req.to_proto()).await
    }

    /// ApproveTransfer of any message (one no [`TransferRequest`] can express, such as a
    /// missing amount); its key is remembered.
    pub async fn approve_message_as(
        &self,
        auth: &Auth,
        message: ApproveTransferRequest,
    ) -> Result<Transfer, Status> {
        self.remember(TransferKey {
            user_id: message.user_id.clone(),
            idempotency_key: message.idempotency_key.clone(),
        });
        let response = self
            .client
            .clone()
            .approve_transfer(self.authorized(auth, message))
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

    /// GetTransfer by id, as `user_id` (the gateway shows a user only their own
    /// transfers).
    pub async fn get_by_id(&self, user_id: &str, transfer_id: &str) -> Result<Transfer, Status> {
        self.get_as(
            &Auth::user(user_id),
            Lookup::TransferId(transfer_id.to_owned()),
        )
        .await
    }

    /// GetTransfer by key, as the key's user.
    pub async fn get_by_key(&self, key: &TransferKey) -> Result<Transfer, Status> {
        self.get_as(
            &Auth::User(key.user_id.clone()),
            Lookup::IdempotencyKey(IdempotencyKeyLookup {
                user_id: key.user_id.clone(),
                idempotency_key: key.idempotency_key.clone(),
            }),
        )
        .await
    }

    /// GetTransfer authenticated by `auth`.
    pub async fn get_as(&self, auth: &Auth, lookup: Lookup) -> Result<Transfer, Status> {
        let message = GetTransferRequest {
            lookup: Some(lookup),
        };
        let response = self
            .client
            .clone()
            .get_transfer(self.authorized(auth, message))
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
