//! `run`: one measurement, then the ledger check.

use std::time::Duration;

use serde::Serialize;

use crate::args::{LoopMode, RunArgs};
use crate::driver::{self, LoadReport, LoadSpec, Mode};
use crate::ledger::LedgerReport;
use crate::output;
use crate::system::System;

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub database: String,
    pub users: u32,
    pub load: LoadReport,
    pub ledger: LedgerReport,
}

pub fn spec(args: &RunArgs, label: &str) -> LoadSpec {
    LoadSpec {
        mode: match args.mode {
            LoopMode::Open => Mode::Open {
                rate_per_s: args.rate,
                in_flight_max: args.in_flight_max,
            },
            LoopMode::Closed => Mode::Closed {
                concurrency: args.concurrency,
            },
        },
        warmup: Duration::from_secs(args.warmup_s),
        duration: Duration::from_secs(args.duration_s),
        timeout: args.system.timeout(),
        retry: args.retry,
        label: label.to_owned(),
        progress: !args.system.no_progress,
        keep_timeline: args.slowest > 0,
    }
}

/// Runs the measurement; `Ok` holds whether the ledger check passed.
pub async fn run(args: &RunArgs) -> Result<RunResult, String> {
    let system = System::start(&args.system, None).await?;
    let before = system.baseline().await?;
    let label = match args.mode {
        LoopMode::Open => format!("open {}/s", args.rate),
        LoopMode::Closed => format!("closed x{}", args.concurrency),
    };
    let load = driver::drive(
        system.target.clone(),
        system.book.clone(),
        spec(args, &label),
        system.cpu_probe(),
    )
    .await;
    println!("{}", load.one_line());
    let ledger = system.check(&before, &args.system).await;
    let result = RunResult {
        database: args.system.database_name(),
        users: args.system.users,
        load,
        ledger,
    };
    output::print_run(&result.load, &result.ledger);
    if args.slowest > 0 {
        output::print_slowest(&result.load.timeline, args.slowest);
    }
    if let Some(path) = &args.out {
        output::write_json(path, &result)?;
    }
    Ok(result)
}
