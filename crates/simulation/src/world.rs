//! The simulated world: the durable stores (created here, outside every host, so that a
//! crashed and restarted host finds them as it left them and loses only its in-flight,
//! volatile work), the users and their accounts, and the four hosts serving the real
//! services over turmoil.

use coordinator::Backends;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use banktransfer_api::external::v1::fault_injection_service_server::FaultInjectionServiceServer;
use banktransfer_protocol::reservation::Side;
use coordinator::participants::GrpcParticipants;
use gateway_coordinator::approve::TransferIds;
use internal_balance_store::rules::Rules;
use mock_external_institution::fault_gate::FaultGate;
use mock_external_institution::fault_injection::{FaultInjectionApi, SharedFaults};
use mock_external_institution::faults::FaultList;
use participant::NoScreening;
use participant::config::SeedAccount;
use participant::grpc::{NoGate, Participant};
use reconciler::jitter::Jitter;
use service_kit::clock::SharedClock;
use service_kit::server::{ServerSection, ServerSettings, Transport};
use service_kit::tls::{PeerIdentity, SpiffeId};
use testkit::memory_book::MemoryBook;
use testkit::memory_transfer_store::MemoryTransferStore;
use tonic::service::Routes;

use crate::clock::{EPOCH_MS, SimClock};
use crate::config::SimConfig;
use crate::net::{self, ChannelSettings};
use crate::rng::SimRng;
use crate::screening::BalanceStoreMemoryScreening;
use crate::trace::SharedLog;
use crate::weather::SharedWeather;
use crate::workload::Observation;

pub const GATEWAY: &str = "gateway";
pub const EXTERNAL: &str = "external";
pub const BALANCE_STORE: &str = "balance_store";
pub const RECONCILER: &str = "reconciler";
/// The hosts a fault may crash, partition or slow down.
pub const SERVICES: [&str; 4] = [GATEWAY, EXTERNAL, BALANCE_STORE, RECONCILER];

pub const GATEWAY_PORT: u16 = 50051;
pub const EXTERNAL_PORT: u16 = 50052;
pub const BALANCE_STORE_PORT: u16 = 50053;
pub const RECONCILER_PORT: u16 = 50054;

/// Amounts at or above it need a manual review at the balance store (ANTIFRAUD).
pub const ANTIFRAUD_THRESHOLD_MINOR: i64 = 250;
pub const CURRENCY: &str = "USD";

/// One simulated user and the accounts they move money between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    /// What the external account holds at the start.
    pub opening_minor: i64,
}

/// Transfer ids from the seed: unique, and the same on every run of a seed. Held outside
/// the gateway host, so that a restarted gateway does not hand out an id twice.
pub struct SeededIds {
    prefix: u64,
    next: AtomicU64,
}

impl TransferIds for SeededIds {
    fn next_transfer_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        format!("tr-{:08x}-{n:05}", self.prefix)
    }
}

pub type ExternalBook = MemoryBook<NoScreening>;
pub type BalanceStoreBook = MemoryBook<BalanceStoreMemoryScreening>;

pub struct World {
    pub config: SimConfig,
    pub users: Vec<User>,
    pub rules: Rules,
    /// The coordinator's transfer log, shared by the gateway and the reconciler as their
    /// database is.
    pub coordinator: Arc<MemoryTransferStore>,
    pub external: ExternalBook,
    pub balance_store: BalanceStoreBook,
    pub coordinator_weather: SharedWeather,
    pub external_weather: SharedWeather,
    pub balance_store_weather: SharedWeather,
    /// The external institution's own fault list (its FaultInjectionApi's).
    pub institution_faults: SharedFaults,
    pub ids: Arc<SeededIds>,
    /// Reconciler starts so far: each start seeds its jitter afresh.
    pub reconciler_boots: Arc<AtomicU64>,
    /// Every answer the users got.
    pub observations: Arc<Mutex<Vec<Observation>>>,
    pub log: SharedLog,
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let seed = config.seed;
        let users: Vec<User> = (0..config.users)
            .map(|i| User {
                user_id: format!("user-{i}"),
                external_account_id: format!("ext-{i}"),
                internal_account_id: format!("int-{i}"),
                opening_minor: 300 + 100 * i64::from(i % 3),
            })
            .collect();
        let rules = Rules {
            transfer_minor_max: 1_000,
            daily_inbound_limit_minor: 400,
            antifraud_review_threshold_minor: ANTIFRAUD_THRESHOLD_MINOR,
            blocked_users: Vec::new(),
            rate_limit_reserves_max: 25,
            rate_limit_window_ms: 5_000,
        };
        rules.validate().expect("the simulation's rules are valid");
        let coordinator_weather = SharedWeather::default();
        let external_weather = SharedWeather::default();
        let balance_store_weather = SharedWeather::default();
        let coordinator = MemoryTransferStore::new()
            .with_failures(coordinator_weather.planner(SimRng::derive(seed, "db-coordinator")))
            .with_mutation(config.mutation.store());
        let external = MemoryBook::new(Side::Debit, NoScreening)
            .with_failures(external_weather.planner(SimRng::derive(seed, "db-external")))
            .with_mutation(config.mutation.book());
        let balance_store = MemoryBook::new(
            Side::Credit,
            BalanceStoreMemoryScreening::new(rules.clone()),
        )
        .with_failures(balance_store_weather.planner(SimRng::derive(seed, "db-balance_store")));
        open_accounts(&users, &external, &balance_store);
        World {
            log: SharedLog::new(config.recent_events),
            users,
            rules,
            coordinator: Arc::new(coordinator),
            external,
            balance_store,
            coordinator_weather,
            external_weather,
            balance_store_weather,
            institution_faults: Arc::new(Mutex::new(FaultList::default())),
            ids: Arc::new(SeededIds {
                prefix: SimRng::derive(seed, "transfer-ids") & 0xffff_ffff,
                next: AtomicU64::new(1),
            }),
            reconciler_boots: Arc::new(AtomicU64::new(0)),
            observations: Arc::new(Mutex::new(Vec::new())),
            config,
        }
    }

    pub fn observations(&self) -> Vec<Observation> {
        self.observations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers the four service hosts. Each host's software is rebuilt from the
    /// durable stores whenever turmoil (re)starts it.
    pub fn register_hosts(&self, sim: &mut turmoil::Sim<'_>) {
        let book = self.external.clone();
        let faults = Arc::clone(&self.institution_faults);
        sim.host(EXTERNAL, move || {
            serve_external(book.clone(), Arc::clone(&faults))
        });

        let book = self.balance_store.clone();
        sim.host(BALANCE_STORE, move || serve_balance_store(book.clone()));

        let store = Arc::clone(&self.coordinator);
        let ids = Arc::clone(&self.ids);
        sim.host(GATEWAY, move || {
            serve_gateway(Arc::clone(&store), Arc::clone(&ids) as Arc<dyn TransferIds>)
        });

        let store = Arc::clone(&self.coordinator);
        let boots = Arc::clone(&self.reconciler_boots);
        let seed = self.config.seed;
        sim.host(RECONCILER, move || {
            let boot = boots.fetch_add(1, Ordering::SeqCst);
            let jitter = Jitter::seeded(SimRng::derive(seed, &format!("jitter-{boot}")));
            serve_reconciler(Arc::clone(&store), jitter)
        });
    }
}

/// Opens every user's accounts with the services' own seeding code.
fn open_accounts(users: &[User], external: &ExternalBook, balance_store: &BalanceStoreBook) {
    let seed = |account_id: &str, user_id: &str, opening_balance_minor| SeedAccount {
        account_id: account_id.to_owned(),
        user_id: user_id.to_owned(),
        currency: CURRENCY.to_owned(),
        opening_balance_minor,
    };
    let external_accounts: Vec<SeedAccount> = users
        .iter()
        .map(|u| seed(&u.external_account_id, &u.user_id, u.opening_minor))
        .collect();
    let balance_store_accounts: Vec<SeedAccount> = users
        .iter()
        .map(|u| seed(&u.internal_account_id, &u.user_id, 0))
        .collect();
    // The stores are calm at the start (no delays): the futures finish on first poll; a
    // plain runtime outside the simulation runs them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime for opening the accounts");
    let now_ms = EPOCH_MS;
    runtime
        .block_on(async {
            participant::seed::open_accounts(external, &external_accounts, now_ms).await?;
            participant::seed::open_accounts(balance_store, &balance_store_accounts, now_ms).await
        })
        .expect("opening the simulated accounts");
}

fn clock() -> SharedClock {
    Arc::new(SimClock)
}

/// A server on the simulated network, which has no TLS: every caller of it is taken to be
/// `caller` (the simulated hosts that call it), with the services' default limits.
fn server_settings(caller: SpiffeId) -> ServerSettings {
    ServerSettings {
        transport: Transport::Plaintext {
            caller: PeerIdentity::Spiffe(caller),
        },
        ..ServerSection::default().settings_without_tls()
    }
}

/// The participants' servers: called by the gateway and the reconciler (both coordinator
/// identities).
fn participant_server() -> ServerSettings {
    server_settings(SpiffeId::GATEWAY_COORDINATOR)
}

async fn serve(
    port: u16,
    routes: Routes,
    service_names: &[&str],
    settings: ServerSettings,
) -> turmoil::Result {
    let incoming = net::incoming(port).await?;
    // Hosts stop only by crashing: the shutdown signal never comes.
    service_kit::server::serve_incoming(
        incoming,
        routes,
        service_names,
        settings,
        std::future::pending(),
    )
    .await?;
    Ok(())
}

async fn serve_external(book: ExternalBook, faults: SharedFaults) -> turmoil::Result {
    let participant = Participant::new(book, clock());
    // Lost replies wait for this signal, which lives as long as the process.
    let (_stopping, stop) = service_kit::shutdown::channel();
    let gate = FaultGate::new(Arc::clone(&faults), stop);
    let routes = participant::grpc::routes(participant, Side::Debit, gate).add_service(
        FaultInjectionServiceServer::new(FaultInjectionApi::new(faults)),
    );
    serve(
        EXTERNAL_PORT,
        routes,
        mock_external_institution::SERVICE_NAMES,
        participant_server(),
    )
    .await
}

async fn serve_balance_store(book: BalanceStoreBook) -> turmoil::Result {
    let participant = Participant::new(book, clock());
    let routes = participant::grpc::routes(participant, Side::Credit, NoGate);
    serve(
        BALANCE_STORE_PORT,
        routes,
        internal_balance_store::SERVICE_NAMES,
        participant_server(),
    )
    .await
}

fn participants() -> Arc<GrpcParticipants> {
    let settings = ChannelSettings::default();
    Arc::new(GrpcParticipants::from_channels(
        net::channel(EXTERNAL, EXTERNAL_PORT, settings),
        net::channel(BALANCE_STORE, BALANCE_STORE_PORT, settings),
    ))
}

/// The gateway's settings: the defaults (a 200 ms budget).
pub fn gateway_settings() -> gateway_coordinator::Settings {
    let mut settings = gateway_coordinator::Settings::default();
    settings.auth.verify_key_path = crate::tokens::verify_key_path();
    settings
}

async fn serve_gateway(
    store: Arc<MemoryTransferStore>,
    ids: Arc<dyn TransferIds>,
) -> turmoil::Result {
    let settings = gateway_settings();
    let backends = Backends {
        store,
        participants: participants(),
        clock: clock(),
    };
    let routes = gateway_coordinator::routes(&settings, backends, ids)?;
    serve(
        GATEWAY_PORT,
        routes,
        &[gateway_coordinator::SERVICE_NAME],
        // Users authenticate by bearer token; no certificate identity.
        ServerSettings {
            transport: Transport::Plaintext {
                caller: PeerIdentity::Anonymous,
            },
            ..ServerSection::default().settings_without_tls()
        },
    )
    .await
}

/// The reconciler's settings: the defaults, with a shorter lease and backoff cap so that
/// a run settles within simulated seconds after its faults end.
pub fn reconciler_settings() -> reconciler::Settings {
    let mut settings = reconciler::Settings {
        replica_id: "reconciler-sim".into(),
        lease_ms: 3_000,
        ..reconciler::Settings::default()
    };
    settings.retry.backoff_ms_max = 4_000;
    settings
}

/// How long after the faults end the reconciler may need, at most, to pick everything
/// up again: a lease to expire, the longest backoff, a pass interval and a call.
pub fn reconciler_recovery_bound() -> Duration {
    let s = reconciler_settings();
    Duration::from_millis(
        s.lease_ms + s.retry.backoff_ms_max + s.pass_interval_ms + s.call_timeout_ms,
    )
}

async fn serve_reconciler(store: Arc<MemoryTransferStore>, jitter: Jitter) -> turmoil::Result {
    let settings = reconciler_settings();
    let (_stopping, stop) = service_kit::shutdown::channel();
    let backends = Backends {
        store,
        participants: participants(),
        clock: clock(),
    };
    let (routes, reconciler) = reconciler::routes(&settings, backends, jitter, stop.clone())?;
    tokio::spawn(reconciler::worker::run(
        reconciler,
        stop,
        settings.pass_interval(),
    ));
    serve(
        RECONCILER_PORT,
        routes,
        &[reconciler::SERVICE_NAME],
        server_settings(SpiffeId::OPERATOR),
    )
    .await
}
