//! The cluster's knobs ([`ClusterConfig`], with test-friendly defaults) and the TOML file
//! each service is started with (`--config <file>`). The keys are the services' contract.
//!
//! Every service gets `[tls]` from the cluster's PKI directory (every port speaks TLS) and
//! calls its peers at `https://127.0.0.1:PORT`; the gateway gets `[auth]`, the key that
//! verifies user tokens.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use banktransfer_protocol::budget::BudgetPolicy;
use service_kit::identity::{TOKEN_AUDIENCE_DEFAULT, TOKEN_ISSUER_DEFAULT};

use crate::accounts::{self, AccountSpec, Side};
use crate::database::DatabaseChoice;
use crate::service::Service;

/// Where the gateway stops on purpose (and logs `pause point reached: <point>`), so that a
/// test can SIGKILL it there. Only the e2e build of the gateway (the `pause-points`
/// feature, `make build`) has pause points; they are set through its environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PausePoint {
    None,
    /// Both reserves answered, no decision recorded yet.
    AfterReserve,
    /// The decision is recorded, nothing confirmed or cancelled yet.
    AfterDecision,
}

impl PausePoint {
    pub fn as_str(self) -> &'static str {
        match self {
            PausePoint::None => "",
            PausePoint::AfterReserve => "after_reserve",
            PausePoint::AfterDecision => "after_decision",
        }
    }

    /// The log line the gateway writes when it reaches the point.
    pub fn log_marker(self) -> String {
        format!("pause point reached: {}", self.as_str())
    }
}

/// The balance store's screening rules.
#[derive(Clone, Debug)]
pub struct Rules {
    pub transfer_minor_max: i64,
    pub daily_inbound_limit_minor: i64,
    /// Amounts at or above this are refused ANTIFRAUD.
    pub antifraud_review_threshold_minor: i64,
    pub blocked_users: Vec<String>,
    pub rate_limit_reserves_max: u32,
    pub rate_limit_window_ms: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            transfer_minor_max: 100_000_000,
            daily_inbound_limit_minor: 1_000_000_000,
            antifraud_review_threshold_minor: 5_000_000,
            blocked_users: vec!["mallory".to_owned()],
            rate_limit_reserves_max: 100_000,
            rate_limit_window_ms: 60_000,
        }
    }
}

/// The gateway's deadline budget.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub total_ms: u64,
    pub after_reserve_ms: u64,
    pub reply_margin_ms: u64,
    /// An undecided transfer is aborted (by the reconciler or a replay) once it is
    /// `total_ms + stale_margin_ms` old.
    pub stale_margin_ms: u64,
}

impl Budget {
    /// The services' own budget (`BudgetPolicy::DEFAULT`, what `config/*.toml` deploy):
    /// 200 ms, stale after 2 s. The benchmarks run with it.
    pub const SHIPPED: Budget = Budget {
        total_ms: BudgetPolicy::DEFAULT.total_ms,
        after_reserve_ms: BudgetPolicy::DEFAULT.after_reserve_ms,
        reply_margin_ms: BudgetPolicy::DEFAULT.reply_margin_ms,
        stale_margin_ms: BudgetPolicy::DEFAULT.stale_margin_ms,
    };

    /// [`Budget::SHIPPED`] with a stale margin of 0.8 s instead of 1.8 s, so that
    /// takeovers come sooner: for the tests about what happens when a budget runs out
    /// (faults, pause points, crashes, staleness), through [`ClusterConfig::timed`].
    pub const TIMED: Budget = Budget {
        stale_margin_ms: 800,
        ..Budget::SHIPPED
    };

    /// 3 s, every cluster's default. A debug build on a loaded 2-core machine misses
    /// 200 ms now and then (a cold first transfer, a slow fsync: CI saw a first intent
    /// take 190 ms), and the tests that only ask whether the money moved right must not
    /// turn on that. Latency is measured by `make bench` (release, warm), not by tests.
    pub const PATIENT: Budget = Budget {
        total_ms: 3_000,
        after_reserve_ms: 900,
        reply_margin_ms: 100,
        stale_margin_ms: 1_000,
    };

    /// When an undecided transfer turns stale (`BudgetPolicy::stale_after_ms`).
    pub fn stale_after_ms(&self) -> u64 {
        self.total_ms + self.stale_margin_ms
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::PATIENT
    }
}

#[derive(Clone, Copy, Debug)]
pub struct GatewayTuning {
    pub connect_timeout_ms: u64,
    pub in_flight_max: u32,
    /// `[admission]`: where the adaptive concurrency limit starts, and one user's cap.
    pub limit_initial: u32,
    pub per_user_in_flight_max: u32,
    pub pause_at: PausePoint,
    pub pause_ms: u64,
}

impl Default for GatewayTuning {
    fn default() -> Self {
        GatewayTuning {
            connect_timeout_ms: 500,
            in_flight_max: 256,
            // Above every burst these suites send (40 transfers of one user at once): they
            // are about safety under contention, not admission, which
            // crates/gateway-coordinator/tests/admission.rs tests.
            limit_initial: 64,
            per_user_in_flight_max: 64,
            pause_at: PausePoint::None,
            pause_ms: 60_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReconcilerTuning {
    pub replica_id: String,
    pub pass_interval_ms: u64,
    pub batch_size: u32,
    pub lease_ms: u64,
    pub call_timeout_ms: u64,
    pub backoff_ms_initial: u64,
    pub backoff_ms_max: u64,
}

impl Default for ReconcilerTuning {
    fn default() -> Self {
        ReconcilerTuning {
            replica_id: "e2e-reconciler-1".to_owned(),
            pass_interval_ms: 100,
            batch_size: 100,
            lease_ms: 1_000,
            call_timeout_ms: 500,
            backoff_ms_initial: 50,
            backoff_ms_max: 500,
        }
    }
}

/// `[server]`, the same for every service.
#[derive(Clone, Copy, Debug)]
pub struct ServerTuning {
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    /// `[server] worker_threads`; 0: one per core (the services' default).
    pub worker_threads: usize,
}

impl Default for ServerTuning {
    fn default() -> Self {
        ServerTuning {
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 2_000,
            worker_threads: 0,
        }
    }
}

/// Everything a test may change about its cluster. `Default` is the test-friendly setup.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Opened by the participants at start-up.
    pub accounts: Vec<AccountSpec>,
    pub rules: Rules,
    pub budget: Budget,
    pub gateway: GatewayTuning,
    pub reconciler: ReconcilerTuning,
    pub server: ServerTuning,
    pub database: DatabaseChoice,
    /// The PostgreSQL server to create the databases on (a URL of its `postgres`
    /// database); `None`: the one `BANKTRANSFER_TEST_POSTGRES_URL` names. The load
    /// generator's chaos mode points it at a private server that it kills too.
    pub postgres_admin_url: Option<String>,
    /// Where the binaries are; `None` means next to the running executable.
    pub bin_dir: Option<PathBuf>,
    /// An OTLP collector (`http://HOST:PORT`) every service exports its traces to; `None`:
    /// traces off, as in `make run`.
    pub otlp_endpoint: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            accounts: accounts::demo_accounts(),
            rules: Rules::default(),
            budget: Budget::default(),
            gateway: GatewayTuning::default(),
            reconciler: ReconcilerTuning::default(),
            server: ServerTuning::default(),
            database: DatabaseChoice::FromEnv,
            postgres_admin_url: None,
            bin_dir: None,
            otlp_endpoint: None,
        }
    }
}

impl ClusterConfig {
    /// The 200 ms budget ([`Budget::TIMED`]) instead of the patient default, for tests
    /// whose point is what happens when it runs out.
    pub fn timed(mut self) -> ClusterConfig {
        self.budget = Budget::TIMED;
        self
    }
}

/// What the harness decided for this cluster: ports and database URLs.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub gateway_port: u16,
    pub external_port: u16,
    pub balance_store_port: u16,
    pub reconciler_port: u16,
    /// Each service's Prometheus endpoint (`[metrics] listen_addr`), in the order of the
    /// ports above: gateway, external institution, balance store, reconciler.
    pub metrics_ports: [u16; 4],
    /// Shared by the gateway and the reconciler.
    pub coordinator_db: String,
    pub external_db: String,
    pub balance_store_db: String,
    /// The cluster's PKI (`banktransfer_pki::files` layout).
    pub pki_dir: PathBuf,
}

impl Endpoints {
    pub fn port(&self, service: Service) -> u16 {
        match service {
            Service::Gateway => self.gateway_port,
            Service::External => self.external_port,
            Service::BalanceStore => self.balance_store_port,
            Service::Reconciler => self.reconciler_port,
        }
    }
    /// Where `service` serves `/metrics`.
    pub fn metrics_port(&self, service: Service) -> u16 {
        let index = match service {
            Service::Gateway => 0,
            Service::External => 1,
            Service::BalanceStore => 2,
            Service::Reconciler => 3,
        };
        self.metrics_ports[index]
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Clock skew tolerated on user tokens: the gateway's default. The expired-token attack
/// dates its token well beyond it.
pub const TOKEN_LEEWAY_S: u64 = 30;

/// The configuration file of `service`.
pub fn render(service: Service, config: &ClusterConfig, endpoints: &Endpoints) -> String {
    let mut t = String::new();
    let url = |port: u16| quote(&format!("https://127.0.0.1:{port}"));
    let _ = writeln!(
        t,
        "listen_addr = {}",
        quote(&format!("127.0.0.1:{}", endpoints.port(service)))
    );
    let _ = writeln!(t, "log_format = \"pretty\"");
    match service {
        Service::External => {
            let _ = writeln!(t, "database_url = {}", quote(&endpoints.external_db));
        }
        Service::BalanceStore => {
            let _ = writeln!(t, "database_url = {}", quote(&endpoints.balance_store_db));
        }
        Service::Gateway => {
            let g = &config.gateway;
            let _ = writeln!(t, "database_url = {}", quote(&endpoints.coordinator_db));
            let _ = writeln!(t, "external_url = {}", url(endpoints.external_port));
            let _ = writeln!(
                t,
                "balance_store_url = {}",
                url(endpoints.balance_store_port)
            );
            let _ = writeln!(t, "connect_timeout_ms = {}", g.connect_timeout_ms);
            let _ = writeln!(t, "in_flight_max = {}", g.in_flight_max);
        }
        Service::Reconciler => {
            let r = &config.reconciler;
            let _ = writeln!(t, "database_url = {}", quote(&endpoints.coordinator_db));
            let _ = writeln!(t, "external_url = {}", url(endpoints.external_port));
            let _ = writeln!(
                t,
                "balance_store_url = {}",
                url(endpoints.balance_store_port)
            );
            let _ = writeln!(
                t,
                "connect_timeout_ms = {}",
                config.gateway.connect_timeout_ms
            );
            let _ = writeln!(t, "replica_id = {}", quote(&r.replica_id));
            let _ = writeln!(t, "pass_interval_ms = {}", r.pass_interval_ms);
            let _ = writeln!(t, "batch_size = {}", r.batch_size);
            let _ = writeln!(t, "lease_ms = {}", r.lease_ms);
            let _ = writeln!(t, "call_timeout_ms = {}", r.call_timeout_ms);
        }
    }

    let _ = writeln!(t, "\n[server]");
    let _ = writeln!(
        t,
        "request_timeout_ms = {}",
        config.server.request_timeout_ms
    );
    let _ = writeln!(t, "shutdown_grace_ms = {}", config.server.shutdown_grace_ms);
    let _ = writeln!(t, "worker_threads = {}", config.server.worker_threads);

    match service {
        Service::External => render_accounts(&mut t, config, Side::External),
        Service::BalanceStore => {
            let r = &config.rules;
            let _ = writeln!(t, "\n[rules]");
            let _ = writeln!(t, "transfer_minor_max = {}", r.transfer_minor_max);
            let _ = writeln!(
                t,
                "daily_inbound_limit_minor = {}",
                r.daily_inbound_limit_minor
            );
            let _ = writeln!(
                t,
                "antifraud_review_threshold_minor = {}",
                r.antifraud_review_threshold_minor
            );
            let blocked: Vec<String> = r.blocked_users.iter().map(|u| quote(u)).collect();
            let _ = writeln!(t, "blocked_users = [{}]", blocked.join(", "));
            let _ = writeln!(t, "rate_limit_reserves_max = {}", r.rate_limit_reserves_max);
            let _ = writeln!(t, "rate_limit_window_ms = {}", r.rate_limit_window_ms);
            render_accounts(&mut t, config, Side::BalanceStore);
        }
        Service::Gateway => {
            render_budget(&mut t, &config.budget);
            let g = &config.gateway;
            let _ = writeln!(t, "\n[admission]");
            let _ = writeln!(t, "limit_initial = {}", g.limit_initial);
            let _ = writeln!(t, "per_user_in_flight_max = {}", g.per_user_in_flight_max);
        }
        Service::Reconciler => {
            // The gateway's own budget: both judge staleness by it.
            render_budget(&mut t, &config.budget);
            let r = &config.reconciler;
            let _ = writeln!(t, "\n[retry]");
            let _ = writeln!(t, "backoff_ms_initial = {}", r.backoff_ms_initial);
            let _ = writeln!(t, "backoff_ms_max = {}", r.backoff_ms_max);
        }
    }
    let _ = writeln!(t, "\n[metrics]");
    let _ = writeln!(
        t,
        "listen_addr = {}",
        quote(&format!("127.0.0.1:{}", endpoints.metrics_port(service)))
    );
    render_tls(&mut t, service, &endpoints.pki_dir);
    if service == Service::Gateway {
        render_auth(&mut t, &endpoints.pki_dir);
    }
    t
}

/// `[tls]`: the service's own certificate (its file names are its binary name, the
/// layout of `banktransfer-pki init`) and the cluster's CA.
fn render_tls(t: &mut String, service: Service, pki_dir: &Path) {
    let path = |file: String| quote(&pki_dir.join(file).display().to_string());
    let name = service.binary_name();
    let _ = writeln!(t, "\n[tls]");
    let _ = writeln!(t, "cert_path = {}", path(format!("{name}.pem")));
    let _ = writeln!(t, "key_path = {}", path(format!("{name}-key.pem")));
    let _ = writeln!(t, "ca_path = {}", path("ca.pem".to_owned()));
}

/// `[auth]`: the gateway verifies user tokens with the cluster's token key.
fn render_auth(t: &mut String, pki_dir: &Path) {
    let verify_key = pki_dir.join("token-verify-key.pem");
    let _ = writeln!(t, "\n[auth]");
    let _ = writeln!(
        t,
        "verify_key_path = {}",
        quote(&verify_key.display().to_string())
    );
    let _ = writeln!(t, "issuer = {}", quote(TOKEN_ISSUER_DEFAULT));
    let _ = writeln!(t, "audience = {}", quote(TOKEN_AUDIENCE_DEFAULT));
    let _ = writeln!(t, "leeway_s = {}", TOKEN_LEEWAY_S);
}

/// The environment `service` starts with besides its configuration file: the gateway's
/// TEST-ONLY pause point (see `coordinator::pause`), which no configuration file can set.
pub fn environment(service: Service, config: &ClusterConfig) -> Vec<(String, String)> {
    let mut environment = Vec::new();
    if let Some(endpoint) = &config.otlp_endpoint {
        // The standard variables, as a deployment sets them; spans leave within 50 ms
        // instead of the SDK's 5 s, so the trace test need not wait long.
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ] {
            environment.push((name.to_owned(), value.to_owned()));
        }
    }
    let g = &config.gateway;
    if service == Service::Gateway && g.pause_at != PausePoint::None {
        environment.push((
            "BANKTRANSFER_TEST_PAUSE_AT".to_string(),
            g.pause_at.as_str().to_string(),
        ));
        environment.push((
            "BANKTRANSFER_TEST_PAUSE_MS".to_string(),
            g.pause_ms.to_string(),
        ));
    }
    environment
}

fn render_budget(t: &mut String, b: &Budget) {
    let _ = writeln!(t, "\n[budget]");
    let _ = writeln!(t, "total_ms = {}", b.total_ms);
    let _ = writeln!(t, "after_reserve_ms = {}", b.after_reserve_ms);
    let _ = writeln!(t, "reply_margin_ms = {}", b.reply_margin_ms);
    let _ = writeln!(t, "stale_margin_ms = {}", b.stale_margin_ms);
}

fn render_accounts(t: &mut String, config: &ClusterConfig, side: Side) {
    for a in config.accounts.iter().filter(|a| a.side == side) {
        let _ = writeln!(t, "\n[[accounts]]");
        let _ = writeln!(t, "account_id = {}", quote(&a.account_id));
        let _ = writeln!(t, "user_id = {}", quote(&a.user_id));
        let _ = writeln!(t, "currency = {}", quote(&a.currency));
        let _ = writeln!(t, "opening_balance_minor = {}", a.opening_minor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            gateway_port: 1,
            external_port: 2,
            balance_store_port: 3,
            reconciler_port: 4,
            metrics_ports: [11, 12, 13, 14],
            coordinator_db: "sqlite:///tmp/x/coordinator.db".into(),
            external_db: "sqlite:///tmp/x/external.db".into(),
            balance_store_db: "sqlite:///tmp/x/balance store.db".into(),
            pki_dir: PathBuf::from("/tmp/x/pki"),
        }
    }

    #[test]
    fn gateway_config_names_its_peers_and_budget_and_its_environment_the_pause_point() {
        let mut config = ClusterConfig::default();
        config.gateway.pause_at = PausePoint::AfterDecision;
        let text = render(Service::Gateway, &config, &endpoints());
        assert!(text.contains("listen_addr = \"127.0.0.1:1\"\n"), "{text}");
        assert!(
            text.contains("external_url = \"https://127.0.0.1:2\"\n"),
            "{text}"
        );
        assert!(
            text.contains("balance_store_url = \"https://127.0.0.1:3\"\n"),
            "{text}"
        );
        assert!(text.contains("database_url = \"sqlite:///tmp/x/coordinator.db\"\n"));
        assert!(text.contains("[budget]\ntotal_ms = 3000\n"), "{text}");
        assert!(!text.contains("pause"), "{text}");
        assert_eq!(
            environment(Service::Gateway, &config),
            vec![
                (
                    "BANKTRANSFER_TEST_PAUSE_AT".to_string(),
                    "after_decision".to_string()
                ),
                (
                    "BANKTRANSFER_TEST_PAUSE_MS".to_string(),
                    "60000".to_string()
                ),
            ]
        );
        assert!(environment(Service::Reconciler, &config).is_empty());
        config.gateway.pause_at = PausePoint::None;
        assert!(environment(Service::Gateway, &config).is_empty());
        assert!(text.contains("[server]\nrequest_timeout_ms = "), "{text}");
    }

    #[test]
    fn reconciler_shares_the_coordinator_database() {
        let text = render(
            Service::Reconciler,
            &ClusterConfig::default().timed(),
            &endpoints(),
        );
        assert!(text.contains("database_url = \"sqlite:///tmp/x/coordinator.db\"\n"));
        assert!(
            text.contains("[budget]\ntotal_ms = 200\nafter_reserve_ms = 60\nreply_margin_ms = 10\nstale_margin_ms = 800\n"),
            "{text}"
        );
        assert!(
            text.contains("[retry]\nbackoff_ms_initial = 50\n"),
            "{text}"
        );
        assert!(text.contains("pass_interval_ms = 100\n"), "{text}");
    }

    #[test]
    fn participants_open_only_their_own_accounts() {
        let config = ClusterConfig::default();
        let ext = render(Service::External, &config, &endpoints());
        assert!(ext.contains("account_id = \"ext-alice\""));
        assert!(!ext.contains("int-alice"));
        assert!(!ext.contains("[rules]"));
        let balance_store = render(Service::BalanceStore, &config, &endpoints());
        assert!(balance_store.contains("account_id = \"int-alice\""));
        assert!(!balance_store.contains("ext-alice"));
        assert!(
            balance_store.contains("blocked_users = [\"mallory\"]\n"),
            "{balance_store}"
        );
        assert!(balance_store.contains("antifraud_review_threshold_minor = 5000000\n"));
    }

    #[test]
    fn every_service_speaks_tls_with_its_own_certificate_and_the_gateway_checks_tokens() {
        for service in Service::ALL {
            let text = render(service, &ClusterConfig::default(), &endpoints());
            let name = service.binary_name();
            let tls = format!(
                "\n[tls]\ncert_path = \"/tmp/x/pki/{name}.pem\"\n\
                 key_path = \"/tmp/x/pki/{name}-key.pem\"\nca_path = \"/tmp/x/pki/ca.pem\"\n"
            );
            assert!(text.contains(&tls), "{text}");
            assert!(!text.contains("http://"), "{text}");
            assert_eq!(
                text.contains("[auth]"),
                service == Service::Gateway,
                "{text}"
            );
        }
        let reconciler = render(Service::Reconciler, &ClusterConfig::default(), &endpoints());
        assert!(
            reconciler.contains("external_url = \"https://127.0.0.1:2\"\n"),
            "{reconciler}"
        );
        let gateway = render(Service::Gateway, &ClusterConfig::default(), &endpoints());
        assert!(
            gateway.contains(
                "\n[auth]\nverify_key_path = \"/tmp/x/pki/token-verify-key.pem\"\n\
                 issuer = \"https://auth.banktransfer.local\"\n\
                 audience = \"banktransfer-gateway\"\nleeway_s = 30\n"
            ),
            "{gateway}"
        );
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
