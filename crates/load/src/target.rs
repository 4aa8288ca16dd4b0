//! The system under load, as the tool calls it: a few TLS channels to the gateway used
//! round-robin (HTTP/2 multiplexes the requests; one connection per request would measure
//! TLS handshakes), user tokens minted once per user and reused, and the reads the ledger
//! check needs (both participants' books as the auditor, the reconciler's Audit and the
//! accounts' OpenAccount as the operator).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::balance_store::v1::balance_store_service_client::BalanceStoreServiceClient;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_client::ExternalInstitutionServiceClient;
use banktransfer_api::gateway::v1::get_transfer_request::Lookup;
use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, GetTransferRequest, IdempotencyKeyLookup, Transfer,
};
use banktransfer_api::money::v1::Money;
use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_e2e::pki::bearer;
use banktransfer_e2e::{Caller, ClusterPki, Service};
use service_kit::jwt::AUTHORIZATION_HEADER;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::users;

/// A fresh connection's TCP and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of the tool's own reads and account openings.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens live an hour; one older than this is minted again.
const TOKEN_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Bound on `--connections`.
pub const CONNECTIONS_MAX: usize = 64;

/// Where the four services listen: `https://host:port` each.
#[derive(Clone, Debug)]
pub struct Urls {
    pub gateway: String,
    pub external: String,
    pub balance_store: String,
    pub reconciler: String,
}

impl Urls {
    pub fn local(port: impl Fn(Service) -> u16) -> Urls {
        let url = |s| format!("https://127.0.0.1:{}", port(s));
        Urls {
            gateway: url(Service::Gateway),
            external: url(Service::External),
            balance_store: url(Service::BalanceStore),
            reconciler: url(Service::Reconciler),
        }
    }
}

/// A user's `authorization` value and when its token was minted.
type MintedToken = (MetadataValue<Ascii>, Instant);

/// The clients of one system.
pub struct Target {
    gateways: Vec<TransferServiceClient<Channel>>,
    next_gateway: AtomicUsize,
    pki: ClusterPki,
    tokens: Vec<Mutex<Option<MintedToken>>>,
    users: u32,
    /// As the reconciler: ListAccounts is for the coordinator's identities.
    pub external_book: ReservationServiceClient<Channel>,
    pub balance_store_book: ReservationServiceClient<Channel>,
    /// As the operator.
    pub external_accounts: ExternalInstitutionServiceClient<Channel>,
    pub balance_store_accounts: BalanceStoreServiceClient<Channel>,
    pub reconciler: ReconcilerServiceClient<Channel>,
}

fn channel(url: &str, pki: &ClusterPki, caller: Caller) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("{url}: {e}"))?
        .tls_config(pki.client_tls(caller))
        .map_err(|e| format!("TLS for {url}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy())
}

impl Target {
    pub fn new(
        urls: &Urls,
        pki: ClusterPki,
        users: u32,
        connections: usize,
    ) -> Result<Target, String> {
        assert!((1..=CONNECTIONS_MAX).contains(&connections));
        let mut gateways = Vec::with_capacity(connections);
        for _ in 0..connections {
            let ch = channel(&urls.gateway, &pki, Caller::NoCertificate)?;
            gateways.push(TransferServiceClient::new(ch));
        }
        let auditor = Caller::Service(Service::Reconciler);
        let tokens = (0..users).map(|_| Mutex::new(None)).collect();
        Ok(Target {
            gateways,
            next_gateway: AtomicUsize::new(0),
            external_book: ReservationServiceClient::new(channel(&urls.external, &pki, auditor)?),
            balance_store_book: ReservationServiceClient::new(channel(
                &urls.balance_store,
                &pki,
                auditor,
            )?),
            external_accounts: ExternalInstitutionServiceClient::new(channel(
                &urls.external,
                &pki,
                Caller::Operator,
            )?),
            balance_store_accounts: BalanceStoreServiceClient::new(channel(
                &urls.balance_store,
                &pki,
                Caller::Operator,
            )?),
            reconciler: ReconcilerServiceClient::new(channel(
                &urls.reconciler,
                &pki,
                Caller::Operator,
            )?),
            pki,
            tokens,
            users,
        })
    }

    pub fn users(&self) -> u32 {
        self.users
    }

    /// `Bearer <token>` for user `index`, minted at most every [`TOKEN_REFRESH`].
    fn authorization(&self, index: u32) -> MetadataValue<Ascii> {
        let mut slot = self.tokens[index as usize].lock().expect("token slot");
        if let Some((value, minted)) = slot.as_ref()
            && minted.elapsed() < TOKEN_REFRESH
        {
            return value.clone();
        }
        let value = bearer(&self.pki.token(&users::user_id(index)));
        *slot = Some((value.clone(), Instant::now()));
        value
    }

    fn gateway(&self) -> TransferServiceClient<Channel> {
        let i = self.next_gateway.fetch_add(1, Ordering::Relaxed) % self.gateways.len();
        self.gateways[i].clone()
    }

    fn authorized<T>(&self, user: u32, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.authorization(user));
        request
    }

    /// ApproveTransfer of one cent from user `user`'s external account to their balance
    /// store account, under `key`; the client gives up after `timeout` (DEADLINE_EXCEEDED)
    /// even if the server does not.
    pub async fn approve(
        &self,
        user: u32,
        key: &str,
        timeout: Duration,
    ) -> Result<Transfer, Status> {
        let user_id = users::user_id(user);
        let message = ApproveTransferRequest {
            idempotency_key: key.to_owned(),
            external_account_id: users::external_account(&user_id),
            internal_account_id: users::internal_account(&user_id),
            user_id,
            amount: Some(usd(users::AMOUNT_MINOR)),
        };
        let request = self.authorized(user, message, timeout);
        let mut gateway = self.gateway();
        let call = gateway.approve_transfer(request);
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => transfer_of(answer?.into_inner().transfer),
            Err(_) => Err(Status::deadline_exceeded("the client's deadline passed")),
        }
    }

    /// GetTransfer by the client's key, as its user.
    pub async fn get(&self, user: u32, key: &str) -> Result<Transfer, Status> {
        let message = GetTransferRequest {
            lookup: Some(Lookup::IdempotencyKey(IdempotencyKeyLookup {
                user_id: users::user_id(user),
                idempotency_key: key.to_owned(),
            })),
        };
        let request = self.authorized(user, message, READ_TIMEOUT);
        let answer = self.gateway().get_transfer(request).await?;
        transfer_of(answer.into_inner().transfer)
    }

    /// Opens every user's two accounts through the participants' OpenAccount, as the
    /// operator (a deployed system's accounts are opened this way rather than by
    /// configuration). An account that exists already (ALREADY_EXISTS) is fine: its
    /// opening balance is whatever it was, and the ledger check compares differences.
    pub async fn open_accounts(&self) -> Result<(), String> {
        for index in 0..self.users {
            let user = users::user_id(index);
            let mut ext = Request::new(external_pb::OpenAccountRequest {
                account_id: users::external_account(&user),
                user_id: user.clone(),
                opening_balance: Some(usd(users::OPENING_MINOR)),
            });
            ext.set_timeout(READ_TIMEOUT);
            accept_existing(
                self.external_accounts
                    .clone()
                    .open_account(ext)
                    .await
                    .map(drop),
            )
            .map_err(|e| format!("OpenAccount ext-{user}: {e}"))?;
            let mut int = Request::new(balance_store_pb::OpenAccountRequest {
                account_id: users::internal_account(&user),
                user_id: user.clone(),
                opening_balance: Some(usd(0)),
            });
            int.set_timeout(READ_TIMEOUT);
            accept_existing(
                self.balance_store_accounts
                    .clone()
                    .open_account(int)
                    .await
                    .map(drop),
            )
            .map_err(|e| format!("OpenAccount int-{user}: {e}"))?;
        }
        Ok(())
    }
}

fn accept_existing(result: Result<(), Status>) -> Result<(), Status> {
    match result {
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        other => other,
    }
}

fn transfer_of(transfer: Option<Transfer>) -> Result<Transfer, Status> {
    transfer.ok_or_else(|| Status::internal("answered without a transfer"))
}

pub fn usd(minor_units: i64) -> Money {
    Money {
        minor_units,
        currency: "USD".to_owned(),
    }
}

/// The upper-case name of a gRPC code, as the counts show it (`DEADLINE_EXCEEDED`).
pub fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_upper_snake_case() {
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
