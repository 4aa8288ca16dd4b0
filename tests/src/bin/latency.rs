//! `latency`: end-to-end latency of ApproveTransfer against a cluster of the real
//! binaries.
//!
//! Starts the four services (from `--bin-dir`, default the directory of this executable,
//! so `cargo run --release -p banktransfer-e2e --bin latency` measures release builds),
//! performs `--count` sequential ApproveTransfer calls of 0.01 USD from a well-funded
//! account, and prints count, min, p50, p90, p99, p99.9 and max in milliseconds plus the
//! number of SUCCEEDED transfers. Exits non-zero unless every transfer succeeded and the
//! money invariants hold afterwards.
//!
//! Usage: latency [--count N] [--database sqlite|postgres] [--bin-dir DIR] [--no-check]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::accounts::AccountSpec;
use banktransfer_e2e::config::Budget;
use banktransfer_e2e::{Cluster, ClusterConfig, DatabaseChoice, TransferRequest};
use hdrhistogram::Histogram;

struct Args {
    count: u64,
    database: DatabaseChoice,
    bin_dir: Option<PathBuf>,
    check: bool,
}

const USAGE: &str =
    "usage: latency [--count N] [--database sqlite|postgres] [--bin-dir DIR] [--no-check]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        count: 1000,
        database: DatabaseChoice::Sqlite,
        bin_dir: None,
        check: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--count" => {
                let v = value("--count")?;
                args.count = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--count: not a positive integer: {v}"))?;
            }
            "--database" => {
                args.database = match value("--database")?.as_str() {
                    "sqlite" => DatabaseChoice::Sqlite,
                    "postgres" => DatabaseChoice::Postgres,
                    other => return Err(format!("--database: sqlite or postgres, not {other}")),
                };
            }
            "--bin-dir" => args.bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--no-check" => args.check = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("latency: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let count = args.count;
    let mut config = ClusterConfig {
        database: args.database,
        bin_dir: args.bin_dir,
        // The services' own budget, as deployed.
        budget: Budget::SHIPPED,
        ..ClusterConfig::default()
    };
    let funds = i64::try_from(count)
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2)
        .max(1_000_000);
    config
        .accounts
        .push(AccountSpec::external("ext-bench", "bench", funds));
    config
        .accounts
        .push(AccountSpec::internal("int-bench", "bench", 0));
    let limit = u32::try_from(count.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(100_000);
    config.rules.rate_limit_reserves_max = limit;
    config.rules.daily_inbound_limit_minor = funds;
    // Settle the books at the end even for long runs.
    config.reconciler.batch_size = 1000;

    let Some(cluster) = Cluster::start_if_available(config).await else {
        eprintln!("latency: no PostgreSQL reachable");
        return ExitCode::FAILURE;
    };
    let transfers = cluster.transfers();
    // One call before timing anything (the cluster has connected the channel already).
    let _ = transfers.get_by_id("bench", "warm-up").await;

    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut succeeded = 0u64;
    let mut failures: Vec<String> = Vec::new();
    let run_started = Instant::now();
    for _ in 0..count {
        let req = TransferRequest::new("bench", 1);
        let started = Instant::now();
        let answer = transfers.approve(&req).await;
        let elapsed = started.elapsed();
        histogram.saturating_record(
            u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        match answer {
            Ok(t) if t.status() == TransferStatus::Succeeded => succeeded += 1,
            Ok(t) => failures.push(format!("{:?} {}", t.status(), t.failure_reason)),
            Err(status) => {
                failures.push(format!("error {:?}: {}", status.code(), status.message()))
            }
        }
    }
    let wall = run_started.elapsed();

    println!(
        "ApproveTransfer latency, {} sequential calls ({} databases, binaries in {})",
        count,
        args.database.name(),
        cluster
            .config()
            .bin_dir
            .clone()
            .unwrap_or_else(banktransfer_e2e::binaries::default_dir)
            .display()
    );
    println!("  count   {}", histogram.len());
    println!("  min     {} ms", ms(histogram.min()));
    println!("  p50     {} ms", ms(histogram.value_at_quantile(0.50)));
    println!("  p90     {} ms", ms(histogram.value_at_quantile(0.90)));
    println!("  p99     {} ms", ms(histogram.value_at_quantile(0.99)));
    println!("  p99.9   {} ms", ms(histogram.value_at_quantile(0.999)));
    println!("  max     {} ms", ms(histogram.max()));
    println!("  mean    {} ms", ms(histogram.mean() as u64));
    println!(
        "  throughput {:.1} transfers/s over {:.2?}",
        count as f64 / wall.as_secs_f64().max(f64::EPSILON),
        wall
    );
    println!("  SUCCEEDED {succeeded} of {count}");
    let mut ok = succeeded == count;
    if !failures.is_empty() {
        println!("  not SUCCEEDED: {} (first few below)", failures.len());
        for f in failures.iter().take(10) {
            println!("    {f}");
        }
    }
    if args.check {
        let keys = transfers.made();
        let accounts = cluster.config().accounts.clone();
        let report = banktransfer_e2e::invariants::check(
            cluster.clients(),
            &transfers,
            &accounts,
            &keys,
            Duration::from_secs(60),
        )
        .await;
        if report.is_ok() {
            println!("  money invariants hold over {} transfers", keys.len());
        } else {
            println!("{}", report.render());
            ok = false;
        }
    }
    drop(cluster);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
