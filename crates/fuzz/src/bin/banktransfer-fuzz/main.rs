//! The fuzzing driver: seeds each target's corpus, runs its libFuzzer binary within a
//! bound (runs or seconds), then replays the corpus in this process to tally the
//! outcomes and check every input again. `replay` runs saved inputs (a crash libFuzzer
//! wrote) through a target here, with the same checks. `make fuzz` and `make fuzz-long`
//! use it; `--help` lists the options.

mod libfuzzer;
mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

use banktransfer_fuzz::Target;
use banktransfer_fuzz::alloc_budget::CountingAllocator;
use clap::{Args, Parser, Subcommand};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[derive(Parser)]
#[command(about = "Fuzz the public requests: bytes -> protobuf decode -> validation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run libFuzzer targets within a bound and report executions, crashes, exec/s and
    /// the outcomes reached.
    Run(RunArgs),
    /// Run saved inputs through a target in this process and print each outcome; fails
    /// on a panic or a broken rule.
    Replay {
        #[arg(long, value_parser = parse_target)]
        target: Target,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the seed corpus of each target into DIR/<target>/ (for `cargo fuzz run`).
    Seed {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// A target to run (repeatable); every target when absent.
    #[arg(long = "target", value_parser = parse_target)]
    targets: Vec<Target>,
    /// Executions per target.
    #[arg(long, conflicts_with = "seconds")]
    runs: Option<u64>,
    /// Seconds per target (the default bound: 10).
    #[arg(long)]
    seconds: Option<u64>,
    /// libFuzzer's random seed: the same seed, corpus and binary give the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the libFuzzer binaries are (built by `make fuzz-build`).
    #[arg(long)]
    bin_dir: PathBuf,
    /// Corpus, crash artifacts and logs go under this directory, per target.
    #[arg(long)]
    work_dir: PathBuf,
}

fn parse_target(name: &str) -> Result<Target, String> {
    Target::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
        format!("unknown target {name:?}; targets: {}", names.join(", "))
    })
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run(args) => {
            let targets = if args.targets.is_empty() {
                Target::ALL.to_vec()
            } else {
                args.targets
            };
            let bound = match (args.runs, args.seconds) {
                (Some(runs), _) => libfuzzer::Bound::Runs(runs),
                (None, seconds) => libfuzzer::Bound::Seconds(seconds.unwrap_or(10)),
            };
            let settings = libfuzzer::RunSettings {
                bound,
                seed: args.seed,
                bin_dir: args.bin_dir,
                work_dir: args.work_dir,
            };
            let mut crashes = 0;
            for target in &targets {
                crashes += libfuzzer::run(*target, &settings)?;
            }
            println!(
                "fuzz: {} targets, {crashes} crashes{}",
                targets.len(),
                if crashes == 0 {
                    ""
                } else {
                    " (inputs under <work-dir>/artifacts/<target>/; replay them with \
                     `banktransfer-fuzz replay --target <target> FILE`)"
                }
            );
            Ok(exit_code(crashes == 0))
        }
        Command::Replay { target, files } => Ok(exit_code(replay::files(target, &files)?)),
        Command::Seed { dir } => {
            for target in Target::ALL {
                let written = replay::write_seeds(target, &dir.join(target.name()))?;
                println!("{}: {written} seeds", target.name());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
