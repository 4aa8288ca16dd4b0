//! [`Cluster`]: the four real binaries as child processes of the test, on free ports,
//! with fresh databases and their logs in a temporary directory.
//!
//! Start-up: a fresh PKI in the cluster's directory (`pki/`), then the external
//! institution, the balance store and the gateway together, then the reconciler once the
//! gateway is SERVING (they share the coordinator's database; the gateway creates its
//! schema first). A service is up when the standard gRPC health check answers SERVING
//! over TLS; one that does not within [`START_TIMEOUT`] fails the test with the tail of its
//! log. Once a service is up, the harness's own channels to it are connected (TLS
//! handshake included) before the test goes on.
//!
//! On drop every child is SIGKILLed. When the test failed (or `E2E_KEEP=1`), the directory
//! is kept and its path printed, so the logs can be read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tonic_health_client::pb::health_check_response::ServingStatus;

use crate::binaries;
use crate::clients::{Clients, Transfers};
use crate::config::{self, ClusterConfig, Endpoints};
use crate::database::{self, DatabaseChoice, Databases};
use crate::health;
use crate::invariants::{self, Report};
use crate::logs;
use crate::pki::{Caller, ClusterPki};
use crate::ports;
use crate::process::ServiceProcess;
use crate::service::Service;

/// How long a service gets to answer SERVING after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of log shown when something goes wrong.
const TAIL_LINES: usize = 60;

pub struct Cluster {
    config: ClusterConfig,
    endpoints: Endpoints,
    bin_dir: PathBuf,
    /// The services currently running (killed or terminated ones are removed).
    processes: BTreeMap<Service, ServiceProcess>,
    pki: Arc<ClusterPki>,
    clients: Clients,
    transfers: Transfers,
    /// Dropped after the processes are gone.
    _databases: Databases,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir_path)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a cluster; panics when it cannot (including an unreachable PostgreSQL).
    pub async fn start(config: ClusterConfig) -> Cluster {
        let choice = config.database;
        Cluster::start_if_available(config)
            .await
            .unwrap_or_else(|| {
                panic!("cannot start the cluster: {choice:?} database unavailable (see above)")
            })
    }

    /// As [`Cluster::start`], but `None` when the PostgreSQL asked for with
    /// [`crate::DatabaseChoice::Postgres`] is unreachable (a loud skip).
    pub async fn start_if_available(config: ClusterConfig) -> Option<Cluster> {
        let bin_dir = config.bin_dir.clone().unwrap_or_else(binaries::default_dir);
        for service in Service::ALL {
            binaries::locate(&bin_dir, service);
        }
        let dir = tempfile::Builder::new()
            .prefix("banktransfer-e2e-")
            .tempdir()
            .expect("temporary directory for the cluster");
        let dir_path = dir.path().to_path_buf();
        let databases = database::provision(
            config.database,
            config.postgres_admin_url.as_deref(),
            &dir_path,
        )
        .await?;
        let pki = Arc::new(ClusterPki::create(&dir_path.join("pki")));
        let p = ports::free_ports(8);
        let endpoints = Endpoints {
            gateway_port: p[0],
            external_port: p[1],
            balance_store_port: p[2],
            reconciler_port: p[3],
            metrics_ports: [p[4], p[5], p[6], p[7]],
            coordinator_db: databases.coordinator.clone(),
            external_db: databases.external.clone(),
            balance_store_db: databases.balance_store.clone(),
            pki_dir: pki.dir().to_path_buf(),
        };
        eprintln!(
            "[e2e] cluster in {} ({} databases); gateway on 127.0.0.1:{}",
            dir_path.display(),
            config.database.name(),
            endpoints.gateway_port
        );
        let clients = Clients::new(&endpoints, &pki);
        let transfers = Transfers::new(clients.gateway.clone(), Arc::clone(&pki));
        let mut cluster = Cluster {
            config,
            endpoints,
            bin_dir,
            processes: BTreeMap::new(),
            pki,
            clients,
            transfers,
            _databases: databases,
            dir: Some(dir),
            dir_path,
        };
        for service in [Service::External, Service::BalanceStore, Service::Gateway] {
            cluster.spawn(service);
        }
        for service in [Service::External, Service::BalanceStore, Service::Gateway] {
            cluster.wait_serving(service).await;
        }
        cluster.spawn(Service::Reconciler);
        cluster.wait_serving(Service::Reconciler).await;
        Some(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The database back end in use (SQLite or PostgreSQL).
    pub fn backend(&self) -> DatabaseChoice {
        self.config.database.resolve()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Changes take effect for services (re)started afterwards.
    pub fn config_mut(&mut self) -> &mut ClusterConfig {
        &mut self.config
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn port(&self, service: Service) -> u16 {
        self.endpoints.port(service)
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The cluster's PKI (in `<dir>/pki/`): certificates of every identity, the token key.
    pub fn pki(&self) -> &ClusterPki {
        &self.pki
    }

    /// A lazily connected TLS channel to `service` presenting `caller`'s certificate.
    pub fn channel(&self, service: Service, caller: Caller) -> tonic::transport::Channel {
        crate::clients::channel(self.port(service), self.pki.client_tls(caller))
    }

    /// The public API; every transfer asked for through it (or a clone) is remembered
    /// for [`Cluster::assert_invariants`].
    pub fn transfers(&self) -> Transfers {
        self.transfers.clone()
    }

    pub fn config_path(&self, service: Service) -> PathBuf {
        self.dir_path.join(format!("{}.toml", service.short_name()))
    }

    pub fn log_path(&self, service: Service) -> PathBuf {
        self.dir_path.join(format!("{}.log", service.short_name()))
    }

    /// The whole log of `service` (every run), colours stripped.
    pub fn log(&self, service: Service) -> String {
        logs::read_from(&self.log_path(service), 0)
    }

    pub fn log_tail(&self, service: Service, lines: usize) -> String {
        logs::tail(&self.log_path(service), lines)
    }

    /// The current length of `service`'s log: [`Cluster::log_since`] that offset reads
    /// only what is written afterwards.
    pub fn log_len(&self, service: Service) -> u64 {
        logs::len(&self.log_path(service))
    }

    /// `service`'s log from byte `offset` on, colours stripped.
    pub fn log_since(&self, service: Service, offset: u64) -> String {
        logs::read_from(&self.log_path(service), offset)
    }

    pub fn pid(&self, service: Service) -> Option<u32> {
        self.processes.get(&service).map(ServiceProcess::pid)
    }

    /// Writes the configuration and starts the process (without waiting for it).
    fn spawn(&mut self, service: Service) {
        assert!(
            !self.processes.contains_key(&service),
            "{service} is already running"
        );
        let config_path = self.config_path(service);
        std::fs::write(
            &config_path,
            config::render(service, &self.config, &self.endpoints),
        )
        .expect("write the service configuration");
        let binary = binaries::locate(&self.bin_dir, service);
        let environment = config::environment(service, &self.config);
        let process =
            ServiceProcess::spawn(&binary, &config_path, &environment, &self.log_path(service))
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.processes.insert(service, process);
    }

    /// Waits for SERVING, then connects the harness's channels to `service`; panics with
    /// the log tail when the process exits or the wait runs out.
    pub async fn wait_serving(&mut self, service: Service) {
        self.wait_health(service).await;
        if let Err(e) = self.clients.warm(service).await {
            panic!(
                "{service} is SERVING but {e}; logs in {}\n--- tail of {} ---\n{}",
                self.dir_path.display(),
                self.log_path(service).display(),
                self.log_tail(service, TAIL_LINES)
            );
        }
    }

    /// Polls the health check (on a connection of its own) until SERVING.
    async fn wait_health(&mut self, service: Service) {
        let port = self.port(service);
        let tls = self.pki.client_tls(Caller::NoCertificate);
        let started = Instant::now();
        loop {
            let process = self
                .processes
                .get_mut(&service)
                .unwrap_or_else(|| panic!("{service} is not running"));
            if let Some(status) = process.try_wait() {
                self.processes.remove(&service);
                panic!(
                    "{service} exited during start-up ({status}); logs in {}\n--- tail of {} ---\n{}",
                    self.dir_path.display(),
                    self.log_path(service).display(),
                    self.log_tail(service, TAIL_LINES)
                );
            }
            let last = match health::check(port, tls.clone(), Duration::from_secs(1)).await {
                Ok(ServingStatus::Serving) => return,
                Ok(status) => format!("health status {status:?}"),
                Err(e) => e,
            };
            if started.elapsed() >= START_TIMEOUT {
                panic!(
                    "{service} not SERVING on 127.0.0.1:{port} within {START_TIMEOUT:?} (last: {last}); logs in {}\n--- tail of {} ---\n{}",
                    self.dir_path.display(),
                    self.log_path(service).display(),
                    self.log_tail(service, TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self, service: Service) -> bool {
        match self.processes.get_mut(&service) {
            Some(process) => process.try_wait().is_none(),
            None => false,
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self, service: Service) -> ExitStatus {
        let mut process = self
            .processes
            .remove(&service)
            .unwrap_or_else(|| panic!("cannot kill {service}: not running"));
        let status = process.kill();
        eprintln!("[e2e] killed {service} (pid {}): {status}", process.pid());
        status
    }

    /// SIGTERM, then wait for the exit: at most its shutdown grace plus a few seconds for
    /// the process to finish; panics with the log tail if it is still running then.
    pub async fn terminate(&mut self, service: Service) -> ExitStatus {
        let grace = Duration::from_millis(self.config.server.shutdown_grace_ms);
        let limit = grace + Duration::from_secs(5);
        let mut process = self
            .processes
            .remove(&service)
            .unwrap_or_else(|| panic!("cannot terminate {service}: not running"));
        let signalled = Instant::now();
        process
            .signal(Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("SIGTERM to {service}: {e}"));
        match process.wait_exit(limit).await {
            Some(status) => {
                eprintln!(
                    "[e2e] {service} exited {status} {:?} after SIGTERM",
                    signalled.elapsed()
                );
                status
            }
            None => {
                let tail = self.log_tail(service, TAIL_LINES);
                process.kill();
                panic!(
                    "{service} still running {limit:?} after SIGTERM (grace {grace:?}); killed it\n--- tail of its log ---\n{tail}"
                );
            }
        }
    }

    /// Starts `service` again with the current configuration (see
    /// [`Cluster::config_mut`]), the same database and the same port, and waits for
    /// SERVING. A running instance is SIGKILLed first.
    pub async fn restart(&mut self, service: Service) {
        if self.processes.contains_key(&service) {
            self.kill(service);
        }
        self.spawn(service);
        self.wait_serving(service).await;
        eprintln!("[e2e] restarted {service}");
    }

    /// Waits until the running instance of `service` (or the whole log, when it is not
    /// running) logs a line containing `needle`; panics with the log tail otherwise.
    pub async fn wait_for_log(&self, service: Service, needle: &str, timeout: Duration) {
        let offset = self
            .processes
            .get(&service)
            .map_or(0, ServiceProcess::log_offset);
        if let Err(e) = logs::wait_for(&self.log_path(service), offset, needle, timeout).await {
            panic!(
                "{e}\n--- tail of the {service} log ---\n{}",
                self.log_tail(service, TAIL_LINES)
            );
        }
    }

    /// Waits for rest, checks the money invariants over every account of the cluster
    /// and every transfer asked for through [`Cluster::transfers`], and checks that no
    /// service died on its own. Panics with a readable summary on any violation.
    pub async fn assert_invariants(&mut self) -> Report {
        let accounts = self.config.accounts.clone();
        let keys = self.transfers.made();
        let mut report = invariants::check(
            &self.clients,
            &self.transfers,
            &accounts,
            &keys,
            invariants::REST_TIMEOUT,
        )
        .await;
        let mut crashed = Vec::new();
        for (service, process) in &mut self.processes {
            if let Some(status) = process.try_wait() {
                crashed.push((*service, status));
            }
        }
        for (service, status) in crashed {
            report.violations.push(format!(
                "{service} exited on its own ({status}); tail of its log:\n{}",
                self.log_tail(service, TAIL_LINES)
            ));
        }
        assert!(
            report.is_ok(),
            "{}\n(logs in {})",
            report.render(),
            self.dir_path.display()
        );
        report
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Children first: the PostgreSQL guards drop their databases afterwards.
        let processes = std::mem::take(&mut self.processes);
        drop(processes);
        let keep = std::thread::panicking() || std::env::var("E2E_KEEP").is_ok_and(|v| v == "1");
        if keep && let Some(dir) = self.dir.take() {
            let path = dir.keep();
            eprintln!(
                "[e2e] cluster directory kept (configs, logs, SQLite files, PKI): {}",
                path.display()
            );
        }
    }
}
