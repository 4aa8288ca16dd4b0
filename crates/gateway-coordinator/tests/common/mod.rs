//! Shared by this crate's integration tests: fresh stores on every back end, transfer
//! fixtures, and an in-process gateway over scripted participants, serving TLS from a
//! throw-away PKI and called as the mobile app calls it (no client certificate, a bearer
//! token for the user).

#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, ApproveTransferResponse, GetTransferRequest, GetTransferResponse,
    Transfer,
};
use banktransfer_api::money::v1 as money_pb;
use banktransfer_protocol::fingerprint::request_fingerprint;
use banktransfer_protocol::money::Money;
use coordinator::store::{MIGRATIONS, NewTransfer, SqlTransferStore};
use gateway_coordinator::Settings;
use service_kit::clock::{Clock, SystemClock};
use service_kit::db::{self, PoolSettings};
use service_kit::jwt::AUTHORIZATION_HEADER;
use testkit::db::TestDatabase;
use testkit::participants::FakeParticipants;
use testkit::pki::TestPki;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{IntoRequest, Response, Status};

/// The certificate the gateway serves with.
pub const SERVICE: &str = "gateway-coordinator";

pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A separate pool on the database: on SQLite, what another process would have.
pub async fn open_store(test_db: &TestDatabase) -> Arc<SqlTransferStore> {
    let db = db::connect(&test_db.url, PoolSettings::default())
        .await
        .unwrap();
    db::migrate(&db, &MIGRATIONS).await.unwrap();
    Arc::new(SqlTransferStore::new(db))
}

pub fn usd(minor_units: i64) -> Money {
    Money::positive(minor_units, "USD").unwrap()
}

/// An intent for `user`/`key`, created at `created_at_ms` and due right away.
pub fn intent(user: &str, key: &str, amount_minor: i64, created_at_ms: u64) -> NewTransfer {
    NewTransfer {
        transfer_id: uuid::Uuid::now_v7().to_string(),
        user_id: user.into(),
        idempotency_key: key.into(),
        fingerprint: request_fingerprint(user, "ext-1", "int-1", usd(amount_minor)),
        external_account_id: "ext-1".into(),
        internal_account_id: "int-1".into(),
        amount: usd(amount_minor),
        created_at_ms,
        next_attempt_at_ms: created_at_ms,
        trace_context: None,
    }
}

pub fn approve_request(user: &str, key: &str, amount_minor: i64) -> ApproveTransferRequest {
    ApproveTransferRequest {
        idempotency_key: key.into(),
        user_id: user.into(),
        external_account_id: "ext-1".into(),
        internal_account_id: "int-1".into(),
        amount: Some(money_pb::Money {
            minor_units: amount_minor,
            currency: "USD".into(),
        }),
    }
}

/// The TransferService as the mobile app calls it: TLS trusting the PKI's CA, no client
/// certificate, and `authorization: Bearer <token>` for the user each call is for.
#[derive(Clone)]
pub struct UserClient {
    inner: TransferServiceClient<Channel>,
    pki: Arc<TestPki>,
}

impl UserClient {
    /// ApproveTransfer with a valid token for the request's own `user_id`.
    pub async fn approve_transfer(
        &mut self,
        request: impl IntoRequest<ApproveTransferRequest>,
    ) -> Result<Response<ApproveTransferResponse>, Status> {
        let request = request.into_request();
        let user_id = request.get_ref().user_id.clone();
        self.approve_transfer_as(&user_id, request).await
    }

    /// ApproveTransfer with a valid token for `user_id`, whatever the body says.
    pub async fn approve_transfer_as(
        &mut self,
        user_id: &str,
        request: impl IntoRequest<ApproveTransferRequest>,
    ) -> Result<Response<ApproveTransferResponse>, Status> {
        let mut request = request.into_request();
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.pki.bearer(user_id));
        self.inner.approve_transfer(request).await
    }

    /// GetTransfer with a valid token for `user_id`.
    pub async fn get_transfer_as(
        &mut self,
        user_id: &str,
        request: impl IntoRequest<GetTransferRequest>,
    ) -> Result<Response<GetTransferResponse>, Status> {
        let mut request = request.into_request();
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.pki.bearer(user_id));
        self.inner.get_transfer(request).await
    }

    /// The bare client: its calls carry whatever metadata the test puts there (or none).
    pub fn without_token(&self) -> TransferServiceClient<Channel> {
        self.inner.clone()
    }
}

pub struct Gateway {
    pub client: UserClient,
    pub addr: SocketAddr,
    /// The PKI the gateway's certificate and token key come from.
    pub pki: Arc<TestPki>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Gateway {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// A gateway on a free port, over `store` and `participants`, with TLS and user tokens
/// from a fresh PKI.
pub async fn spawn_gateway(
    mut settings: Settings,
    store: Arc<SqlTransferStore>,
    participants: Arc<FakeParticipants>,
) -> Gateway {
    let pki = Arc::new(TestPki::new());
    settings.tls = pki.tls_section(SERVICE);
    settings.auth = pki.token_section();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gateway_coordinator::serve(
            &settings,
            coordinator::Backends {
                store,
                participants,
                clock: Arc::new(SystemClock),
            },
            listener,
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let client = UserClient {
        inner: TransferServiceClient::new(pki.channel(addr, None).await),
        pki: Arc::clone(&pki),
    };
    Gateway {
        client,
        addr,
        pki,
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn status_of(transfer: &Transfer) -> banktransfer_api::gateway::v1::TransferStatus {
    banktransfer_api::gateway::v1::TransferStatus::try_from(transfer.status).unwrap()
}
