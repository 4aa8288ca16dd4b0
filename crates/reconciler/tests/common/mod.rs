//! Shared by the reconciler's tests: stores on every back end, transfer fixtures, a
//! reconciler on a manual clock, and in-process services serving TLS from a throw-away
//! PKI: the reconciler's operator API called as the operator, the gateway as a user's
//! app (no client certificate, the user's bearer token).

#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_protocol::budget::BudgetPolicy;
use banktransfer_protocol::fingerprint::request_fingerprint;
use banktransfer_protocol::money::Money;
use banktransfer_protocol::reconcile::RetryPolicy;
use coordinator::store::{MIGRATIONS, NewTransfer, SqlTransferStore};
use reconciler::jitter::Jitter;
use reconciler::pass::{PassOptions, Reconciler};
use service_kit::clock::{Clock, ManualClock, SharedClock, SystemClock};
use service_kit::db::{self, PoolSettings};
use service_kit::jwt::AUTHORIZATION_HEADER;
use testkit::db::TestDatabase;
use testkit::participants::FakeParticipants;
use testkit::pki::TestPki;
use tokio::sync::oneshot;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use testkit::pki::OPERATOR_NAME as OPERATOR;
pub const GATEWAY: &str = "gateway-coordinator";
pub const RECONCILER: &str = "reconciler";

pub type TestReconciler = Reconciler<SqlTransferStore, FakeParticipants>;

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

/// An intent as the gateway records it at `created_at_ms` (due 200 ms later).
pub fn intent(user: &str, key: &str, created_at_ms: u64) -> NewTransfer {
    NewTransfer {
        transfer_id: uuid::Uuid::now_v7().to_string(),
        user_id: user.into(),
        idempotency_key: key.into(),
        fingerprint: request_fingerprint(user, "ext-1", "int-1", usd(100)),
        external_account_id: "ext-1".into(),
        internal_account_id: "int-1".into(),
        amount: usd(100),
        created_at_ms,
        next_attempt_at_ms: created_at_ms + 200,
        trace_context: None,
    }
}

pub fn options(replica_id: &str) -> PassOptions {
    PassOptions {
        replica_id: replica_id.into(),
        batch_size: 100,
        lease_ms: 10_000,
        call_timeout_ms: 1_000,
        attempts_alert: 20,
        retry: RetryPolicy::DEFAULT,
        budget: BudgetPolicy::DEFAULT,
    }
}

pub fn reconciler(
    store: &Arc<SqlTransferStore>,
    fake: &Arc<FakeParticipants>,
    clock: &ManualClock,
    options: PassOptions,
) -> TestReconciler {
    Reconciler::new(
        Arc::clone(store),
        Arc::clone(fake),
        Arc::new(clock.clone()),
        options,
        Jitter::seeded(7),
    )
}

/// A service running in-process, with a client connected to it.
pub struct Running<C> {
    pub client: C,
    /// `127.0.0.1:PORT`, for clients as other identities.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl<C> Running<C> {
    /// Stops the service and checks that it ran without error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Puts a user's bearer token on every call, as that user's app does.
#[derive(Clone)]
pub struct AsUser(MetadataValue<Ascii>);

impl Interceptor for AsUser {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.0.clone());
        Ok(request)
    }
}

pub type GatewayClient = TransferServiceClient<InterceptedService<Channel, AsUser>>;

/// A gateway on a free port with TLS and user tokens from `pki`, over `store` and `fake`;
/// its client calls as alice.
pub async fn spawn_gateway(
    pki: &TestPki,
    mut settings: gateway_coordinator::Settings,
    store: Arc<SqlTransferStore>,
    fake: Arc<FakeParticipants>,
) -> Running<GatewayClient> {
    settings.tls = pki.tls_section(GATEWAY);
    settings.auth = pki.token_section();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gateway_coordinator::serve(
            &settings,
            coordinator::Backends {
                store,
                participants: fake,
                clock: Arc::new(SystemClock),
            },
            listener,
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let client = TransferServiceClient::with_interceptor(
        pki.channel(addr, None).await,
        AsUser(pki.bearer("alice")),
    );
    Running {
        client,
        addr,
        stop,
        task,
    }
}

/// A reconciler on a free port with TLS from `pki` whose schedule never fires during a
/// test (passes run through RunPass); its client calls as the operator.
pub async fn spawn_reconciler(
    pki: &TestPki,
    store: Arc<SqlTransferStore>,
    fake: Arc<FakeParticipants>,
    clock: SharedClock,
    replica_id: &str,
) -> Running<ReconcilerServiceClient<Channel>> {
    let settings = reconciler::Settings {
        pass_interval_ms: 3_600_000,
        replica_id: replica_id.into(),
        tls: pki.tls_section(RECONCILER),
        ..reconciler::Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let backends = coordinator::Backends {
            store,
            participants: fake,
            clock,
        };
        reconciler::serve(&settings, backends, listener, async move {
            let _ = stopped.await;
        })
        .await
    });
    let client = ReconcilerServiceClient::new(pki.channel(addr, Some(OPERATOR)).await);
    Running {
        client,
        addr,
        stop,
        task,
    }
}
