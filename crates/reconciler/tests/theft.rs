//! The theft of issue 7 against the real services, in-process, on every back end: a
//! caller who reaches the balance store's ReservationService sends Reserve then Confirm
//! with a transfer id of its own choosing, and int-alice is credited 500.00 USD with
//! nothing debited anywhere. The reconciler's Audit reports the reservation no transfer
//! matches; and a balance edited straight in the balance store's database, with no
//! reservation at all, as a balance its opening balance and reservations do not explain.

mod common;

use std::sync::Arc;
use std::time::Duration;

use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{ApproveTransferRequest, TransferStatus};
use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_api::reconciler::v1::{
    AuditRequest, AuditResponse, Participant, UnexplainedReason, UnmatchedReason,
};
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_api::reservation::v1::{
    ConfirmRequest, ListAccountsRequest, ReservationStatus, ReserveRequest,
};
use common::open_store;
use coordinator::participants::GrpcParticipants;
use coordinator::store::SqlTransferStore;
use participant::config::SeedAccount;
use service_kit::clock::SystemClock;
use service_kit::db::{self, PoolSettings};
use testkit::db::TestDatabase;
use testkit::pki::{OPERATOR_NAME, TestPki};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Guards against a hung test, not a timing assertion.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A service running in-process until [`Running::stop`].
struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Runs `serve` on a free port until stopped.
async fn spawn<F, Fut>(serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // HOST:PORT; every port speaks TLS.
    let url = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, stopped));
    Running { url, stop, task }
}

fn seed(account_id: &str, user_id: &str, opening_balance_minor: i64) -> SeedAccount {
    SeedAccount {
        account_id: account_id.into(),
        user_id: user_id.into(),
        currency: "USD".into(),
        opening_balance_minor,
    }
}

async fn external_institution(pki: &TestPki, db: &TestDatabase) -> Running {
    let settings = mock_external_institution::Settings {
        database_url: db.url.clone(),
        tls: pki.tls_section("mock-external-institution"),
        accounts: vec![seed("ext-alice", "alice", 100_000)],
        ..Default::default()
    };
    spawn(|listener, stopped| {
        mock_external_institution::run(settings, listener, async move {
            let _ = stopped.await;
        })
    })
    .await
}

async fn balance_store(pki: &TestPki, db: &TestDatabase) -> Running {
    let mut settings = internal_balance_store::Settings::default();
    settings.common.database_url = db.url.clone();
    settings.common.tls = pki.tls_section("internal-balance-store");
    settings.common.accounts = vec![seed("int-alice", "alice", 0), seed("int-bob", "bob", 0)];
    spawn(|listener, stopped| {
        internal_balance_store::run(settings, listener, async move {
            let _ = stopped.await;
        })
    })
    .await
}

/// A client of a participant's ReservationService, once it answers (migrated, seeded),
/// holding the gateway's certificate: the thief here has stolen a coordinator's key (or
/// is a compromised gateway), the case mTLS alone cannot stop and the audit must catch.
async fn reservations(pki: &TestPki, addr: &str) -> ReservationServiceClient<Channel> {
    let channel = pki.channel(addr, Some("gateway-coordinator")).await;
    let mut client = ReservationServiceClient::new(channel);
    client
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect("the participant serves");
    client
}

async fn gateway(
    pki: &TestPki,
    store: Arc<SqlTransferStore>,
    participants: Arc<GrpcParticipants>,
) -> Running {
    // Roomy: a loaded machine must not fail the legitimate transfer.
    let mut settings = gateway_coordinator::Settings {
        tls: pki.tls_section("gateway-coordinator"),
        auth: pki.token_section(),
        ..Default::default()
    };
    settings.common.budget.total_ms = 5_000;
    settings.common.budget.after_reserve_ms = 2_000;
    spawn(|listener, stopped| async move {
        let backends = coordinator::Backends {
            store,
            participants,
            clock: Arc::new(SystemClock),
        };
        gateway_coordinator::serve(&settings, backends, listener, async move {
            let _ = stopped.await;
        })
        .await
    })
    .await
}

/// A reconciler whose schedule never fires during the test, reading the books one entry
/// per page (every page boundary is crossed).
async fn reconciler(
    pki: &TestPki,
    store: Arc<SqlTransferStore>,
    participants: Arc<GrpcParticipants>,
) -> Running {
    let settings = reconciler::Settings {
        tls: pki.tls_section("reconciler"),
        pass_interval_ms: 3_600_000,
        replica_id: "r1".into(),
        audit_page_size: 1,
        ..reconciler::Settings::default()
    };
    spawn(|listener, stopped| async move {
        let backends = coordinator::Backends {
            store,
            participants,
            clock: Arc::new(SystemClock),
        };
        reconciler::serve(&settings, backends, listener, async move {
            let _ = stopped.await;
        })
        .await
    })
    .await
}

/// The operator's Audit.
async fn audit(pki: &TestPki, addr: &str) -> AuditResponse {
    let mut client = ReconcilerServiceClient::new(pki.channel(addr, Some(OPERATOR_NAME)).await);
    client
        .audit(AuditRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner()
}

fn usd(minor_units: i64) -> Option<money_pb::Money> {
    Some(money_pb::Money {
        minor_units,
        currency: "USD".into(),
    })
}

#[tokio::test]
async fn a_credit_reserved_and_confirmed_with_no_transfer_is_reported() {
    let logs = testkit::db::all("theft_log").await;
    let externals = testkit::db::all("theft_external").await;
    let balance_stores = testkit::db::all("theft_balance_store").await;
    assert_eq!(logs.len(), balance_stores.len());
    for ((log_db, external_db), balance_store_db) in
        logs.iter().zip(&externals).zip(&balance_stores)
    {
        let backend = log_db.backend;
        let pki = TestPki::new();
        let external = external_institution(&pki, external_db).await;
        let internal = balance_store(&pki, balance_store_db).await;
        let mut internal_client = reservations(&pki, &internal.url).await;
        reservations(&pki, &external.url).await;
        let store = open_store(log_db).await;
        let participants = Arc::new(
            GrpcParticipants::connect(
                &format!("https://{}", external.url),
                &format!("https://{}", internal.url),
                CALL_TIMEOUT,
                pki.client_tls("gateway-coordinator"),
            )
            .unwrap(),
        );
        let gateway = gateway(&pki, Arc::clone(&store), Arc::clone(&participants)).await;
        let reconciler = reconciler(&pki, Arc::clone(&store), Arc::clone(&participants)).await;

        // One legitimate transfer: 250.00 USD from ext-alice to int-alice.
        let mut transfers = TransferServiceClient::new(pki.channel(&gateway.url, None).await);
        let mut request = tonic::Request::new(ApproveTransferRequest {
            idempotency_key: "k1".into(),
            user_id: "alice".into(),
            external_account_id: "ext-alice".into(),
            internal_account_id: "int-alice".into(),
            amount: usd(25_000),
        });
        request
            .metadata_mut()
            .insert("authorization", pki.bearer("alice"));
        let approved = transfers
            .approve_transfer(request)
            .await
            .unwrap()
            .into_inner()
            .transfer
            .unwrap();
        assert_eq!(approved.status(), TransferStatus::Succeeded, "{backend:?}");
        let clean = audit(&pki, &reconciler.url).await;
        assert!(clean.mismatches.is_empty(), "{clean:?}");
        assert!(clean.unmatched_reservations.is_empty(), "{clean:?}");
        assert!(clean.unexplained_balances.is_empty(), "{clean:?}");
        assert_eq!(
            (
                clean.reservations_checked,
                clean.accounts_checked,
                clean.books_incomplete
            ),
            (2, 3, false),
            "{backend:?}"
        );

        // The theft: straight at the balance store, a transfer id of the caller's own.
        let held = internal_client
            .reserve(ReserveRequest {
                transfer_id: "steal-1".into(),
                account_id: "int-alice".into(),
                user_id: "alice".into(),
                amount: usd(50_000),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(held.status(), ReservationStatus::Held);
        internal_client
            .confirm(ConfirmRequest {
                transfer_id: "steal-1".into(),
            })
            .await
            .unwrap();

        let theft = audit(&pki, &reconciler.url).await;
        // The log knows nothing of it: the legs rule sees nothing wrong.
        assert!(theft.mismatches.is_empty(), "{theft:?}");
        assert_eq!(theft.transfers_checked, 1);
        // The books rule does; the confirmed reservation explains int-alice's balance.
        assert!(theft.unexplained_balances.is_empty(), "{theft:?}");
        assert_eq!(theft.unmatched_reservations.len(), 1, "{theft:?}");
        let found = &theft.unmatched_reservations[0];
        assert_eq!(found.participant(), Participant::BalanceStore);
        assert_eq!(found.reason(), UnmatchedReason::NoTransfer);
        let reservation = found.reservation.as_ref().unwrap();
        assert_eq!(
            (
                reservation.transfer_id.as_str(),
                reservation.account_id.as_str(),
                reservation.status(),
                reservation.amount.as_ref().unwrap().minor_units
            ),
            ("steal-1", "int-alice", ReservationStatus::Confirmed, 50_000)
        );
        assert_eq!(
            found.description,
            "the balance store holds a CONFIRMED reservation of USD 50000 minor units on \
             account int-alice for transfer steal-1, which the transfer log does not have"
        );
        assert_eq!(theft.reservations_checked, 3);

        // A credit written straight into the balance store's database: no reservation.
        let sql = db::connect(&balance_store_db.url, PoolSettings::default())
            .await
            .unwrap();
        sqlx::query(
            "UPDATE accounts SET available_minor = available_minor + 10000 \
             WHERE account_id = 'int-bob'",
        )
        .execute(&sql.pool)
        .await
        .unwrap();
        sql.pool.close().await;
        let edited = audit(&pki, &reconciler.url).await;
        assert_eq!(edited.unmatched_reservations.len(), 1, "{edited:?}");
        assert_eq!(edited.unexplained_balances.len(), 1, "{edited:?}");
        let found = &edited.unexplained_balances[0];
        assert_eq!(found.participant(), Participant::BalanceStore);
        assert_eq!(found.reason(), UnexplainedReason::BalancesDiffer);
        let account = found.statement.as_ref().unwrap().account.as_ref().unwrap();
        assert_eq!(
            (account.account_id.as_str(), account.available_minor_units),
            ("int-bob", 10_000)
        );
        assert_eq!(found.expected_available_minor_units, 0);

        reconciler.stop().await;
        gateway.stop().await;
        internal.stop().await;
        external.stop().await;
    }
}
