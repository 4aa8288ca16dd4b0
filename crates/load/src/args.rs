//! The command line (clap derive) and its validation: what clap's types cannot say
//! (target flags all or none, rates increasing, bounds) is checked before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use banktransfer_e2e::DatabaseChoice;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::driver::Retry;
use crate::target::{CONNECTIONS_MAX, Urls};
use crate::users::USERS_MAX;

/// Bound on any rate (requests per second).
pub const RATE_MAX: u32 = 100_000;
/// Bound on any phase's length.
pub const DURATION_S_MAX: u64 = 3_600;
/// Bound on `--slowest`: a list longer than this is no longer read, only scrolled.
pub const SLOWEST_MAX: usize = 1000;
/// Bound on outstanding requests and on closed-loop clients.
pub const IN_FLIGHT_MAX_MAX: u32 = 100_000;
/// Bound on sweep steps.
pub const STEPS_MAX: usize = 64;

#[derive(Debug, Parser)]
#[command(
    name = "banktransfer-load",
    about = "Load generator for BankTransfer: open/closed-loop runs, a sweep to the peak \
             sustainable rate and 3x overload, and chaos (SIGKILL under load); the ledger is \
             checked after every run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One measurement (open or closed loop), then the ledger check.
    Run(RunArgs),
    /// Open-loop steps at increasing rates, the peak sustainable rate, then overload.
    Sweep(SweepArgs),
    /// Steady load while services (and a private PostgreSQL) are SIGKILLed and restarted.
    Chaos(ChaosArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn choice(self) -> DatabaseChoice {
        match self {
            Database::Sqlite => DatabaseChoice::Sqlite,
            Database::Postgres => DatabaseChoice::Postgres,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoopMode {
    Open,
    Closed,
}

/// Which system, and how the tool talks to it.
#[derive(Clone, Debug, Args)]
pub struct SystemArgs {
    /// Users the transfers are spread over, round-robin.
    #[arg(long, default_value_t = 3000)]
    pub users: u32,
    /// The database of the tool's own cluster.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: Database,
    /// Where the four service binaries are (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// A running system's gateway (https://host:port); with --external, --balance-store,
    /// --reconciler and --pki-dir, instead of starting a cluster.
    #[arg(long)]
    pub gateway: Option<String>,
    #[arg(long)]
    pub external: Option<String>,
    #[arg(long)]
    pub balance_store: Option<String>,
    #[arg(long)]
    pub reconciler: Option<String>,
    /// The running system's PKI directory (`banktransfer-pki init` layout): its CA, the
    /// operator's and the reconciler's certificates, the token signing key.
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// HTTP/2 connections to the gateway, used round-robin.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The client's deadline per ApproveTransfer call.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// How long the ledger check waits for the system to come to rest.
    #[arg(long, default_value_t = 180)]
    pub rest_timeout_s: u64,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Also run the e2e harness's invariant check over every transfer (own cluster only;
    /// three reads per transfer: for short runs).
    #[arg(long)]
    pub full_check: bool,
}

impl SystemArgs {
    /// The running system's addresses, when the target flags name one.
    pub fn remote(&self) -> Result<Option<(Urls, PathBuf)>, String> {
        let given = [
            &self.gateway,
            &self.external,
            &self.balance_store,
            &self.reconciler,
        ];
        let count =
            given.iter().filter(|u| u.is_some()).count() + usize::from(self.pki_dir.is_some());
        match count {
            0 => Ok(None),
            5 => Ok(Some((
                Urls {
                    gateway: self.gateway.clone().unwrap_or_default(),
                    external: self.external.clone().unwrap_or_default(),
                    balance_store: self.balance_store.clone().unwrap_or_default(),
                    reconciler: self.reconciler.clone().unwrap_or_default(),
                },
                self.pki_dir.clone().unwrap_or_default(),
            ))),
            _ => Err(
                "a running system needs all of --gateway, --external, --balance-store, \
                 --reconciler and --pki-dir"
                    .to_owned(),
            ),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=USERS_MAX).contains(&self.users) {
            return Err(format!("--users must be between 1 and {USERS_MAX}"));
        }
        if !(1..=CONNECTIONS_MAX).contains(&self.connections) {
            return Err(format!(
                "--connections must be between 1 and {CONNECTIONS_MAX}"
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err("--timeout-ms must be between 1 and 60000".to_owned());
        }
        if self.rest_timeout_s == 0 || self.rest_timeout_s > DURATION_S_MAX {
            return Err(format!(
                "--rest-timeout-s must be between 1 and {DURATION_S_MAX}"
            ));
        }
        let remote = self.remote()?;
        if remote.is_some() && self.full_check {
            return Err("--full-check needs the tool's own cluster".to_owned());
        }
        Ok(())
    }

    /// "sqlite", "postgres", or "remote" for a running system.
    pub fn database_name(&self) -> String {
        if self.gateway.is_some() {
            return "remote".to_owned();
        }
        self.database.choice().name().to_owned()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    #[arg(long, value_enum, default_value = "open")]
    pub mode: LoopMode,
    /// Open loop: requests per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Closed loop: clients, each with one request outstanding.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u32,
    /// Open loop: outstanding requests at most; one due beyond it is counted NOT SENT.
    #[arg(long, default_value_t = 1024)]
    pub in_flight_max: u32,
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 2)]
    pub warmup_s: u64,
    #[arg(long, value_enum, default_value = "none")]
    pub retry: Retry,
    /// JSON result file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also list the N slowest requests in the order they were due, to tell a tail spread
    /// over the run from one made of a few stalls.
    #[arg(long, default_value_t = 0)]
    pub slowest: usize,
}

fn check_phase(duration_s: u64, warmup_s: u64) -> Result<(), String> {
    if duration_s == 0 || duration_s > DURATION_S_MAX {
        return Err(format!(
            "--duration-s must be between 1 and {DURATION_S_MAX}"
        ));
    }
    if warmup_s > DURATION_S_MAX {
        return Err(format!("--warmup-s must be at most {DURATION_S_MAX}"));
    }
    Ok(())
}

fn check_rate(name: &str, rate: u32) -> Result<(), String> {
    if rate == 0 || rate > RATE_MAX {
        return Err(format!("{name} must be between 1 and {RATE_MAX}"));
    }
    Ok(())
}

fn check_in_flight(in_flight_max: u32) -> Result<(), String> {
    if in_flight_max == 0 || in_flight_max > IN_FLIGHT_MAX_MAX {
        return Err(format!(
            "--in-flight-max must be between 1 and {IN_FLIGHT_MAX_MAX}"
        ));
    }
    Ok(())
}

impl RunArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.system.validate()?;
        check_phase(self.duration_s, self.warmup_s)?;
        if self.slowest > SLOWEST_MAX {
            return Err(format!("--slowest must be at most {SLOWEST_MAX}"));
        }
        match self.mode {
            LoopMode::Open => {
                check_rate("--rate", self.rate)?;
                check_in_flight(self.in_flight_max)
            }
            LoopMode::Closed => {
                if self.concurrency == 0 || self.concurrency > IN_FLIGHT_MAX_MAX {
                    return Err(format!(
                        "--concurrency must be between 1 and {IN_FLIGHT_MAX_MAX}"
                    ));
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    /// The offered rates, increasing (e.g. 100,200,400); else --rate-start, --rate-step
    /// and --rate-max.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<u32>>,
    #[arg(long, default_value_t = 100)]
    pub rate_start: u32,
    #[arg(long, default_value_t = 100)]
    pub rate_step: u32,
    #[arg(long, default_value_t = 2_000)]
    pub rate_max: u32,
    /// Each step's measured window.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 2)]
    pub warmup_s: u64,
    /// A step is sustainable when its p99 is at most this...
    #[arg(long, default_value_t = 50.0)]
    pub p99_ms: f64,
    /// ...and its goodput at least this fraction of the offered rate.
    #[arg(long, default_value_t = 0.95)]
    pub goodput_fraction_min: f64,
    #[arg(long, default_value_t = 1024)]
    pub in_flight_max: u32,
    /// The overload phase offers this many times the peak sustainable rate.
    #[arg(long, default_value_t = 3)]
    pub overload_factor: u32,
    /// Length of the overload phase (default: --duration-s).
    #[arg(long)]
    pub overload_s: Option<u64>,
    /// The probe right after the overload (default: a quarter of the peak, at least 10/s).
    #[arg(long)]
    pub probe_rate: Option<u32>,
    #[arg(long, default_value_t = 10)]
    pub probe_s: u64,
    #[arg(long, default_value = "target/bench/sweep.json")]
    pub out: PathBuf,
    #[arg(long, default_value = "target/bench/sweep.svg")]
    pub plot: PathBuf,
}

impl SweepArgs {
    /// The offered rates, in order.
    pub fn steps(&self) -> Vec<u32> {
        match &self.rates {
            Some(rates) => rates.clone(),
            None => {
                let step = self.rate_step.max(1);
                (0..)
                    .map(|i: u32| self.rate_start.saturating_add(i.saturating_mul(step)))
                    .take_while(|r| *r <= self.rate_max)
                    .take(STEPS_MAX + 1)
                    .collect()
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.system.validate()?;
        check_phase(self.duration_s, self.warmup_s)?;
        check_in_flight(self.in_flight_max)?;
        if self.rates.is_none() && self.rate_step == 0 {
            return Err("--rate-step must be positive".to_owned());
        }
        let steps = self.steps();
        if steps.is_empty() || steps.len() > STEPS_MAX {
            return Err(format!(
                "a sweep has 1 to {STEPS_MAX} steps, not {}",
                steps.len()
            ));
        }
        for r in &steps {
            check_rate("every rate", *r)?;
        }
        if steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the rates must increase".to_owned());
        }
        if !self.p99_ms.is_finite() || self.p99_ms <= 0.0 {
            return Err("--p99-ms must be positive".to_owned());
        }
        if !self.goodput_fraction_min.is_finite()
            || self.goodput_fraction_min <= 0.0
            || self.goodput_fraction_min > 1.0
        {
            return Err("--goodput-fraction-min must be in (0, 1]".to_owned());
        }
        if self.overload_factor == 0 || self.overload_factor > 100 {
            return Err("--overload-factor must be between 1 and 100".to_owned());
        }
        check_phase(self.overload_s.unwrap_or(self.duration_s), 0)?;
        check_phase(self.probe_s, 0)?;
        if let Some(rate) = self.probe_rate {
            check_rate("--probe-rate", rate)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Args)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    #[arg(long, default_value_t = 150)]
    pub rate: u32,
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Seeds the choice of victims and intervals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "backoff")]
    pub retry: Retry,
    /// A kill every so often: a random interval between these two.
    #[arg(long, default_value_t = 1_000)]
    pub kill_interval_ms_min: u64,
    #[arg(long, default_value_t = 3_000)]
    pub kill_interval_ms_max: u64,
    /// How long a killed process stays down at most (random, from 0).
    #[arg(long, default_value_t = 500)]
    pub down_ms_max: u64,
    /// Outstanding transfers at most (each retries for up to 60 s).
    #[arg(long, default_value_t = 20_000)]
    pub in_flight_max: u32,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ChaosArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.system.validate()?;
        if self.system.remote()?.is_some() {
            return Err("chaos kills the tool's own cluster: no target flags".to_owned());
        }
        if self.retry == Retry::None {
            return Err("chaos needs --retry backoff or aggressive".to_owned());
        }
        check_rate("--rate", self.rate)?;
        check_phase(self.duration_s, 0)?;
        check_in_flight(self.in_flight_max)?;
        if self.kill_interval_ms_min == 0 || self.kill_interval_ms_min > self.kill_interval_ms_max {
            return Err("0 < --kill-interval-ms-min <= --kill-interval-ms-max".to_owned());
        }
        if self.down_ms_max > 60_000 {
            return Err("--down-ms-max must be at most 60000".to_owned());
        }
        Ok(())
    }
}

impl Command {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Command::Run(a) => a.validate(),
            Command::Sweep(a) => a.validate(),
            Command::Chaos(a) => a.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        let cli = Cli::try_parse_from(line.split_whitespace()).map_err(|e| e.to_string())?;
        cli.command.validate()?;
        Ok(cli.command)
    }

    #[test]
    fn defaults_are_valid() {
        let Command::Run(run) = parse("banktransfer-load run").unwrap() else {
            panic!("run")
        };
        assert_eq!(run.system.users, 3000);
        assert_eq!(run.mode, LoopMode::Open);
        assert!(parse("banktransfer-load sweep").is_ok());
        assert!(parse("banktransfer-load chaos --database postgres --retry aggressive").is_ok());
    }

    #[test]
    fn target_flags_come_all_together() {
        let partial = parse("banktransfer-load run --gateway https://h:1").unwrap_err();
        assert!(partial.contains("needs all of"), "{partial}");
        let full = "banktransfer-load run --gateway https://h:1 --external https://h:2 \
                    --balance-store https://h:3 --reconciler https://h:4 --pki-dir /p";
        assert!(parse(full).is_ok());
        assert!(parse(&format!("{full} --full-check")).is_err());
        let chaos = full.replace(" run ", " chaos ");
        assert!(parse(&chaos).unwrap_err().contains("own cluster"));
    }

    #[test]
    fn bounds_and_orders_are_checked() {
        assert!(parse("banktransfer-load run --rate 0").is_err());
        assert!(parse("banktransfer-load run --mode closed --rate 0").is_ok());
        assert!(parse("banktransfer-load run --mode closed --concurrency 0").is_err());
        assert!(parse("banktransfer-load run --users 0").is_err());
        assert!(parse("banktransfer-load run --duration-s 0").is_err());
        assert!(parse("banktransfer-load run --connections 65").is_err());
        assert!(parse("banktransfer-load sweep --rates 100,100").is_err());
        assert!(parse("banktransfer-load sweep --rates 200,100").is_err());
        assert!(parse("banktransfer-load sweep --p99-ms 0").is_err());
        assert!(parse("banktransfer-load sweep --rate-step 0").is_err());
        assert!(parse("banktransfer-load sweep --rate-step 1 --rate-max 100000").is_err());
        assert!(parse("banktransfer-load chaos --retry none").is_err());
        assert!(
            parse("banktransfer-load chaos --kill-interval-ms-min 5 --kill-interval-ms-max 4")
                .is_err()
        );
        assert!(parse("banktransfer-load run --bogus").is_err());
    }

    #[test]
    fn sweep_steps_come_from_the_list_or_the_range() {
        let Command::Sweep(s) = parse("banktransfer-load sweep --rates 50,100,400").unwrap() else {
            panic!("sweep")
        };
        assert_eq!(s.steps(), vec![50, 100, 400]);
        let Command::Sweep(s) =
            parse("banktransfer-load sweep --rate-start 100 --rate-step 150 --rate-max 500")
                .unwrap()
        else {
            panic!("sweep")
        };
        assert_eq!(s.steps(), vec![100, 250, 400]);
    }
}
