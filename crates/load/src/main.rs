//! `banktransfer-load`: see the crate documentation (`src/lib.rs`) and `--help`.

use std::process::ExitCode;

use banktransfer_load::args::{Cli, Command};
use banktransfer_load::{chaos, run, sweep};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(why) = cli.command.validate() {
        eprintln!("banktransfer-load: {why}");
        return ExitCode::from(2);
    }
    // One runtime for everything; two workers match the machine's two cores, where the
    // services run too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let verdict = runtime.block_on(async {
        match &cli.command {
            Command::Run(args) => run::run(args).await.map(|r| r.ledger.ok),
            Command::Sweep(args) => sweep::sweep(args).await,
            Command::Chaos(args) => chaos::chaos(args).await,
        }
    });
    match verdict {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("banktransfer-load: the ledger check failed");
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("banktransfer-load: {why}");
            ExitCode::FAILURE
        }
    }
}
