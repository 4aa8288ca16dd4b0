//! The system under load: the tool's own cluster (started here, killed on drop), or a
//! running one named by the target flags (its users' accounts opened with OpenAccount).

use std::sync::Arc;
use std::time::Duration;

use banktransfer_e2e::invariants;
use banktransfer_e2e::{Cluster, ClusterPki, Service, TransferKey};

use crate::args::SystemArgs;
use crate::cpu::{self, CpuProbe};
use crate::ledger::{self, Baseline, ClientBook, LedgerReport};
use crate::target::{Target, Urls};
use crate::{cluster, users};

pub struct System {
    pub cluster: Option<Cluster>,
    pub target: Arc<Target>,
    pub book: Arc<ClientBook>,
    postgres: bool,
}

impl System {
    /// Starts the tool's own cluster (its PostgreSQL databases on `postgres_admin_url`'s
    /// server when given) or connects to the running one.
    pub async fn start(
        args: &SystemArgs,
        postgres_admin_url: Option<String>,
    ) -> Result<System, String> {
        let book = Arc::new(ClientBook::new(args.users, args.full_check));
        if let Some((urls, pki_dir)) = args.remote()? {
            let pki = ClusterPki::open(&pki_dir)?;
            let target = Target::new(&urls, pki, args.users, args.connections)?;
            eprintln!(
                "[load] opening {} users' accounts at {}",
                args.users, urls.external
            );
            target.open_accounts().await?;
            return Ok(System {
                cluster: None,
                target: Arc::new(target),
                book,
                postgres: false,
            });
        }
        let config = cluster::config(
            args.users,
            args.database.choice(),
            args.bin_dir.clone(),
            postgres_admin_url,
        );
        let cluster = Cluster::start_if_available(config)
            .await
            .ok_or("PostgreSQL is unreachable (see above)")?;
        let urls = Urls::local(|s| cluster.port(s));
        let target = Target::new(&urls, cluster.pki().clone(), args.users, args.connections)?;
        Ok(System {
            postgres: cluster.backend() == banktransfer_e2e::DatabaseChoice::Postgres,
            cluster: Some(cluster),
            target: Arc::new(target),
            book,
        })
    }

    /// What to sample for CPU: our four processes (own cluster only), and PostgreSQL's.
    pub fn cpu_probe(&self) -> Option<CpuProbe> {
        let cluster = self.cluster.as_ref()?;
        let processes = Service::ALL
            .iter()
            .filter_map(|s| cluster.pid(*s).map(|pid| (s.short_name().to_owned(), pid)))
            .collect();
        Some(CpuProbe {
            processes,
            postgres_uid: if self.postgres {
                cpu::postgres_uid()
            } else {
                None
            },
        })
    }

    /// Both books and the client's sums now: what the next check compares with.
    pub async fn baseline(&self) -> Result<Baseline, String> {
        Baseline::read(&self.target, &self.book).await
    }

    /// The ledger check against `before`, plus the harness's full check when asked for.
    pub async fn check(&self, before: &Baseline, args: &SystemArgs) -> LedgerReport {
        let rest = Duration::from_secs(args.rest_timeout_s);
        let mut report = ledger::check(&self.target, &self.book, before, rest).await;
        if args.full_check
            && let Some(cluster) = &self.cluster
        {
            let keys: Vec<TransferKey> = self
                .book
                .keys()
                .into_iter()
                .map(|(user, key)| TransferKey {
                    user_id: users::user_id(user),
                    idempotency_key: key,
                })
                .collect();
            let full = invariants::check(
                cluster.clients(),
                &cluster.transfers(),
                &cluster.config().accounts,
                &keys,
                rest,
            )
            .await;
            report.full_check = Some(full.is_ok());
            if !full.is_ok() {
                report
                    .violations
                    .extend(full.violations.iter().map(|v| format!("full check: {v}")));
                report.ok = false;
            }
        }
        report
    }
}
