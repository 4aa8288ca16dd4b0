//! Starts the institution in-process on a free port over a test database, with TLS from a
//! throw-away PKI, and hands back clients connected as the identities that really call it
//! (reservations as the gateway-coordinator, accounts and faults as the operator), plus
//! small helpers that keep the tests about behaviour.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_client::ExternalInstitutionServiceClient;
use banktransfer_api::external::v1::fault_injection_service_client::FaultInjectionServiceClient;
use banktransfer_api::money::v1::Money;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use mock_external_institution::Settings;
use participant::config::SeedAccount;
use service_kit::db::Backend;
use testkit::db::TestDatabase;
use testkit::pki::TestPki;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

/// Guards against a hung test, not a timing assertion: no call here takes near this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The certificate this service serves with.
pub const SERVICE: &str = "mock-external-institution";
/// Who calls Reserve/Confirm/Cancel/GetReservation in production (the reconciler may too).
pub const GATEWAY: &str = "gateway-coordinator";
pub const RECONCILER: &str = "reconciler";
/// Another participant: a valid certificate, but not a coordinator's.
pub const BALANCE_STORE: &str = "internal-balance-store";
pub use testkit::pki::OPERATOR_NAME as OPERATOR;

pub struct Institution {
    /// The shared ReservationService, as the gateway-coordinator.
    pub client: ReservationServiceClient<Channel>,
    /// The institution's own ExternalInstitutionService, as the operator.
    pub accounts: ExternalInstitutionServiceClient<Channel>,
    /// The FaultInjectionService, as the operator.
    pub faults: FaultInjectionServiceClient<Channel>,
    pub backend: Backend,
    /// `127.0.0.1:PORT`, for channels as other identities ([`Institution::channel_as`]).
    pub addr: std::net::SocketAddr,
    pki: TestPki,
    stop: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

pub fn seed(account_id: &str, user_id: &str, opening_balance_minor: i64) -> SeedAccount {
    SeedAccount {
        account_id: account_id.into(),
        user_id: user_id.into(),
        currency: "USD".into(),
        opening_balance_minor,
    }
}

/// The institution over `db`, with `accounts` opened at start-up.
pub async fn start(db: &TestDatabase, accounts: Vec<SeedAccount>) -> Institution {
    start_with(Settings {
        database_url: db.url.clone(),
        accounts,
        ..Settings::default()
    })
    .await
}

/// A fresh PKI, and `settings` serving with this service's certificate from it.
pub fn with_tls(mut settings: Settings) -> (Settings, TestPki) {
    let pki = TestPki::new();
    settings.tls = pki.tls_section(SERVICE);
    (settings, pki)
}

/// The institution with `settings`, serving TLS with a certificate from a fresh PKI.
pub async fn start_with(settings: Settings) -> Institution {
    // Logs only on request (RUST_LOG=info): they go to stdout, past the test harness.
    if std::env::var_os("RUST_LOG").is_some() {
        service_kit::telemetry::init("mock-external-institution-test", "pretty");
    }
    let (settings, pki) = with_tls(settings);
    let backend = Backend::of_url(&settings.database_url).expect("a test database URL");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(mock_external_institution::run(settings, listener, async {
        let _ = stopped.await;
    }));
    let coordinator = pki.channel(addr, Some(GATEWAY)).await;
    let operator = pki.channel(addr, Some(OPERATOR)).await;
    Institution {
        client: ReservationServiceClient::new(coordinator),
        accounts: ExternalInstitutionServiceClient::new(operator.clone()),
        faults: FaultInjectionServiceClient::new(operator),
        backend,
        addr,
        pki,
        stop,
        server,
    }
}

impl Institution {
    /// A TLS channel to the institution as `identity` (a service name or [`OPERATOR`]), or
    /// with no client certificate when `None`.
    pub async fn channel_as(&self, identity: Option<&str>) -> Channel {
        self.pki.channel(self.addr, identity).await
    }

    pub async fn reservations_as(
        &self,
        identity: Option<&str>,
    ) -> ReservationServiceClient<Channel> {
        ReservationServiceClient::new(self.channel_as(identity).await)
    }

    pub async fn accounts_as(
        &self,
        identity: Option<&str>,
    ) -> ExternalInstitutionServiceClient<Channel> {
        ExternalInstitutionServiceClient::new(self.channel_as(identity).await)
    }

    /// A plaintext (`http://`) channel to the TLS port: `Err` when even the connection
    /// fails, as it may.
    pub async fn plaintext_channel(&self) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("a valid URL")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
    }

    /// Shuts the server down and checks that it ran without error.
    pub async fn stop(self) {
        drop(self.client);
        drop(self.accounts);
        drop(self.faults);
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server ran without error");
    }

    pub async fn reserve(
        &mut self,
        transfer_id: &str,
        account_id: &str,
        user_id: &str,
        amount_minor: i64,
    ) -> Result<pb::Reservation, Status> {
        let request = reserve_request(transfer_id, account_id, user_id, amount_minor);
        let response = self.client.reserve(request).await?.into_inner();
        Ok(response.reservation.expect("a reservation in the reply"))
    }

    pub async fn confirm(&mut self, transfer_id: &str) -> Result<pb::Reservation, Status> {
        let request = pb::ConfirmRequest {
            transfer_id: transfer_id.into(),
        };
        let response = self.client.confirm(request).await?.into_inner();
        Ok(response.reservation.expect("a reservation in the reply"))
    }

    pub async fn cancel(&mut self, transfer_id: &str) -> Result<pb::Reservation, Status> {
        let request = pb::CancelRequest {
            transfer_id: transfer_id.into(),
        };
        let response = self.client.cancel(request).await?.into_inner();
        Ok(response.reservation.expect("a reservation in the reply"))
    }

    pub async fn reservation(&mut self, transfer_id: &str) -> Result<pb::Reservation, Status> {
        let request = pb::GetReservationRequest {
            transfer_id: transfer_id.into(),
        };
        let response = self.client.get_reservation(request).await?.into_inner();
        Ok(response.reservation.expect("a reservation in the reply"))
    }

    pub async fn open(
        &mut self,
        account_id: &str,
        user_id: &str,
        opening_minor: i64,
        currency: &str,
    ) -> Result<pb::Account, Status> {
        let request = external_pb::OpenAccountRequest {
            account_id: account_id.into(),
            user_id: user_id.into(),
            opening_balance: Some(usd_like(opening_minor, currency)),
        };
        let response = self.accounts.open_account(request).await?.into_inner();
        Ok(response.account.expect("an account in the reply"))
    }

    pub async fn account(&mut self, account_id: &str) -> Result<pb::Account, Status> {
        let request = external_pb::GetAccountRequest {
            account_id: account_id.into(),
        };
        let response = self.accounts.get_account(request).await?.into_inner();
        Ok(response.account.expect("an account in the reply"))
    }

    /// (available, reserved, confirmed) of an account that must exist.
    pub async fn balance(&mut self, account_id: &str) -> (i64, i64, i64) {
        let account = self.account(account_id).await.expect("the account exists");
        balance(&account)
    }
}

pub fn balance(account: &pb::Account) -> (i64, i64, i64) {
    (
        account.available_minor_units,
        account.reserved_minor_units,
        account.confirmed_minor_units,
    )
}

pub fn usd_like(minor_units: i64, currency: &str) -> Money {
    Money {
        minor_units,
        currency: currency.into(),
    }
}

pub fn reserve_request(
    transfer_id: &str,
    account_id: &str,
    user_id: &str,
    amount_minor: i64,
) -> pb::ReserveRequest {
    pb::ReserveRequest {
        transfer_id: transfer_id.into(),
        account_id: account_id.into(),
        user_id: user_id.into(),
        amount: Some(usd_like(amount_minor, "USD")),
    }
}

/// Asserts `result` failed with `code`, and returns the status for more checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got OK: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}
