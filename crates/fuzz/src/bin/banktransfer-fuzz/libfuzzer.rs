//! One target's libFuzzer run: seed its corpus, start its binary with the bounds, read
//! the figures libFuzzer prints at the end, then tally the corpus here.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use banktransfer_fuzz::{ALLOCATION_BYTES_MAX, MESSAGE_BYTES_MAX, Target};

use crate::replay;

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    Runs(u64),
    Seconds(u64),
}

pub struct RunSettings {
    pub bound: Bound,
    pub seed: u64,
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// One input that takes longer than this is a hang (libFuzzer saves it as a timeout);
/// validation of 64 KiB takes microseconds.
const INPUT_TIMEOUT_S: u64 = 10;
/// libFuzzer stops with an out-of-memory crash past this resident size: the process
/// itself (its corpus, its tables) plus a generous margin over the allocation budget.
const RSS_LIMIT_MB: u64 = 1_024;

/// Runs `target` and prints its figures; returns how many crashes it found.
pub fn run(target: Target, settings: &RunSettings) -> anyhow::Result<usize> {
    let name = target.name();
    let corpus = settings.work_dir.join("corpus").join(name);
    let artifacts = settings.work_dir.join("artifacts").join(name);
    let logs = settings.work_dir.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    replay::write_seeds(target, &corpus)?;
    let binary = settings.bin_dir.join(name);
    let log_path = logs.join(format!("{name}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

    let bound = match settings.bound {
        Bound::Runs(runs) => format!("-runs={runs}"),
        Bound::Seconds(seconds) => format!("-max_total_time={seconds}"),
    };
    let started = Instant::now();
    let status = Command::new(&binary)
        .arg(bound)
        .arg(format!("-seed={}", settings.seed))
        .arg(format!("-max_len={MESSAGE_BYTES_MAX}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| {
            format!(
                "starting {} (build it with `make fuzz-build`)",
                binary.display()
            )
        })?;
    let wall_s = started.elapsed().as_secs_f64();
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let executions = final_stat(&output, "stat::number_of_executed_units").unwrap_or(0);

    let mut crashes = 0;
    if !status.success() {
        crashes += 1;
        eprintln!(
            "{name}: libFuzzer stopped with {status}: see {} and {}",
            log_path.display(),
            artifacts.display()
        );
    }
    let tally = replay::tally(target, &corpus)?;
    for (path, why) in &tally.failures {
        crashes += 1;
        eprintln!("{name}: {}: {why}", path.display());
    }
    let outcomes: Vec<String> = tally
        .outcomes
        .iter()
        .map(|(label, count)| format!("{label} {count}"))
        .collect();
    println!(
        "{name}: {executions} executions, {crashes} crashes, {wall_s:.1} s, {} exec/s; \
         corpus {} inputs: {}; peak allocation {} KiB (budget {} KiB); longest refusal \
         message {} bytes",
        per_second(executions, wall_s),
        tally.inputs,
        outcomes.join(", "),
        tally.peak_bytes_max.div_ceil(1024),
        ALLOCATION_BYTES_MAX / 1024,
        tally.message_bytes_max,
    );
    Ok(crashes)
}

/// A `stat::NAME: VALUE` line of libFuzzer's final statistics.
fn final_stat(output: &str, name: &str) -> Option<u64> {
    output
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
}

fn per_second(executions: u64, wall_s: f64) -> u64 {
    if wall_s > 0.0 {
        (executions as f64 / wall_s).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read_from_the_end() {
        let output = "#2 INITED\nDone 1000 runs in 1 second(s)\n\
                      stat::number_of_executed_units: 1000\n\
                      stat::average_exec_per_sec:     1000\n";
        assert_eq!(
            final_stat(output, "stat::number_of_executed_units"),
            Some(1000)
        );
        assert_eq!(final_stat(output, "stat::peak_rss_mb"), None);
    }
}
