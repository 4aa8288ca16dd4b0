//! `chaos`: steady open-loop load while a seeded RNG picks, every `kill_interval` (random
//! between its bounds), one of the four services (and, on PostgreSQL, the tool's private
//! database server) to SIGKILL, keeps it down for a random moment and restarts it. Clients
//! retry with the same idempotency key until their transfer is final (backing off, or
//! aggressively), each for at most a minute. Then the ledger check: nothing may be lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use banktransfer_e2e::{Cluster, Service};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::args::{ChaosArgs, Database};
use crate::driver::{self, LoadReport, LoadSpec, Mode, Retry};
use crate::ledger::LedgerReport;
use crate::output;
use crate::postgres::PrivatePostgres;
use crate::system::System;

#[derive(Debug, Serialize)]
pub struct ChaosResult {
    pub database: String,
    pub seed: u64,
    pub retry: Retry,
    pub rate_per_s: u32,
    pub duration_s: u64,
    pub kills: BTreeMap<String, u32>,
    pub load: LoadReport,
    pub ledger: LedgerReport,
    /// Every transfer final and the ledger exact.
    pub nothing_lost: bool,
}

/// What the killer may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    Service(Service),
    Postgres,
}

impl Victim {
    pub fn name(self) -> &'static str {
        match self {
            Victim::Service(s) => s.short_name(),
            Victim::Postgres => "postgres",
        }
    }
}

/// The victims of a chaos run, in a fixed order so that a seed replays the same schedule.
pub fn victims(with_postgres: bool) -> Vec<Victim> {
    let mut v: Vec<Victim> = Service::ALL.iter().map(|s| Victim::Service(*s)).collect();
    if with_postgres {
        v.push(Victim::Postgres);
    }
    v
}

/// The seeded schedule: (wait before the kill, victim, time down), until `length` is used.
pub fn schedule(args: &ChaosArgs, with_postgres: bool) -> Vec<(Duration, Victim, Duration)> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let victims = victims(with_postgres);
    let mut plan = Vec::new();
    let mut used = Duration::ZERO;
    let length = Duration::from_secs(args.duration_s);
    loop {
        let wait = Duration::from_millis(
            rng.random_range(args.kill_interval_ms_min..=args.kill_interval_ms_max),
        );
        let victim = victims[rng.random_range(0..victims.len())];
        let down = Duration::from_millis(rng.random_range(0..=args.down_ms_max));
        used += wait;
        if used >= length {
            return plan;
        }
        plan.push((wait, victim, down));
    }
}

pub async fn chaos(args: &ChaosArgs) -> Result<bool, String> {
    let with_postgres = args.system.database == Database::Postgres;
    let mut pg = if with_postgres {
        let pg = PrivatePostgres::start()?;
        eprintln!("[load] private PostgreSQL on 127.0.0.1:{}", pg.port());
        Some(pg)
    } else {
        None
    };
    let mut system =
        System::start(&args.system, pg.as_ref().map(PrivatePostgres::admin_url)).await?;
    let mut cluster = system.cluster.take().ok_or("chaos needs its own cluster")?;
    let before = system.baseline().await?;
    let spec = LoadSpec {
        mode: Mode::Open {
            rate_per_s: args.rate,
            in_flight_max: args.in_flight_max,
        },
        warmup: Duration::ZERO,
        duration: Duration::from_secs(args.duration_s),
        timeout: args.system.timeout(),
        retry: args.retry,
        label: format!("chaos {}/s {:?}", args.rate, args.retry),
        progress: !args.system.no_progress,
        keep_timeline: false,
    };
    let plan = schedule(args, with_postgres);
    let load = driver::drive(system.target.clone(), system.book.clone(), spec, None);
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let killer = kill_all(&mut cluster, pg.as_mut(), &plan, until);
    let (load, kills) = tokio::join!(load, killer);
    let kills = kills?;
    println!("{}", load.one_line());
    system.cluster = Some(cluster);
    let ledger = system.check(&before, &args.system).await;
    let nothing_lost = ledger.ok && ledger.unresolved == 0 && load.abandoned == 0;
    let result = ChaosResult {
        database: args.system.database_name(),
        seed: args.seed,
        retry: args.retry,
        rate_per_s: args.rate,
        duration_s: args.duration_s,
        kills,
        load,
        ledger,
        nothing_lost,
    };
    output::print_run(&result.load, &result.ledger);
    println!(
        "chaos ({}, seed {}, retry {:?}): {} transfers, kills {:?}, {} SUCCEEDED, {} retries; {}",
        result.database,
        result.seed,
        result.retry,
        result.load.sent,
        result.kills,
        result.load.succeeded,
        result.load.retries,
        if nothing_lost {
            "nothing lost"
        } else {
            "SOMETHING WAS LOST OR THE LEDGER IS WRONG"
        }
    );
    if let Some(path) = &args.out {
        output::write_json(path, &result)?;
    }
    // The cluster goes before the database server it uses.
    drop(system);
    drop(pg);
    Ok(nothing_lost)
}

async fn kill_all(
    cluster: &mut Cluster,
    mut pg: Option<&mut PrivatePostgres>,
    plan: &[(Duration, Victim, Duration)],
    until: Instant,
) -> Result<BTreeMap<String, u32>, String> {
    let mut kills = BTreeMap::new();
    let started = Instant::now();
    for (wait, victim, down) in plan {
        tokio::time::sleep(*wait).await;
        // A slow restart (PostgreSQL's crash recovery) delays the plan: no kill once the
        // load is over.
        if Instant::now() >= until {
            break;
        }
        eprintln!(
            "[load] {:.1?}: SIGKILL {} (down {down:?})",
            started.elapsed(),
            victim.name()
        );
        match victim {
            Victim::Service(service) => {
                cluster.kill(*service);
                tokio::time::sleep(*down).await;
                cluster.restart(*service).await;
            }
            Victim::Postgres => {
                let pg = pg.as_deref_mut().ok_or("no private PostgreSQL to kill")?;
                tokio::task::block_in_place(|| pg.kill())?;
                tokio::time::sleep(*down).await;
                tokio::task::block_in_place(|| pg.start_server())?;
            }
        }
        *kills.entry(victim.name().to_owned()).or_insert(0) += 1;
    }
    Ok(kills)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn args(line: &str) -> ChaosArgs {
        match Cli::try_parse_from(line.split_whitespace())
            .unwrap()
            .command
        {
            Command::Chaos(a) => a,
            _ => panic!("chaos"),
        }
    }

    #[test]
    fn a_seed_replays_the_same_schedule_within_the_duration() {
        let a = args("banktransfer-load chaos --seed 7 --duration-s 30");
        let plan = schedule(&a, true);
        assert_eq!(plan, schedule(&a, true));
        assert_ne!(
            plan,
            schedule(
                &args("banktransfer-load chaos --seed 8 --duration-s 30"),
                true
            )
        );
        let total: Duration = plan.iter().map(|(w, _, _)| *w).sum();
        assert!(total < Duration::from_secs(30));
        // 1 to 3 s apart over 30 s: 10 to 29 kills.
        assert!((10..30).contains(&plan.len()), "{}", plan.len());
        assert!(
            plan.iter().all(|(w, _, d)| {
                (1000..=3000).contains(&w.as_millis()) && d.as_millis() <= 500
            })
        );
        assert!(
            schedule(&a, false)
                .iter()
                .all(|(_, v, _)| *v != Victim::Postgres)
        );
        assert_eq!(victims(true).len(), 5);
    }
}
