//! Inputs run in this process: saved files (`replay`), a whole corpus (tallied after a
//! libFuzzer run), and the seeds written out.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anyhow::Context;
use banktransfer_fuzz::{Execution, Target, execute, seeds};

/// One input run here: its execution, or the panic it caused.
pub fn run_one(target: Target, data: &[u8]) -> Result<Execution, String> {
    panic::catch_unwind(AssertUnwindSafe(|| execute(target, data))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Runs each file through `target`, printing its outcome; true when none panicked or
/// broke a rule.
pub fn files(target: Target, files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut ok = true;
    for file in files {
        let data = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        match run_one(target, &data) {
            Ok(execution) => {
                let verdict = execution.violation();
                println!(
                    "{}: {} bytes -> {}; peak allocation {} bytes, largest {} bytes{}",
                    file.display(),
                    data.len(),
                    execution.outcome,
                    execution.usage.peak_bytes,
                    execution.usage.largest_bytes,
                    verdict
                        .as_deref()
                        .map(|v| format!("; BROKEN RULE: {v}"))
                        .unwrap_or_default()
                );
                ok &= verdict.is_none();
            }
            Err(panic) => {
                println!("{}: {} bytes -> PANIC: {panic}", file.display(), data.len());
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// What a corpus came to, input by input.
#[derive(Default)]
pub struct Tally {
    pub inputs: usize,
    pub outcomes: BTreeMap<String, usize>,
    pub peak_bytes_max: usize,
    pub message_bytes_max: usize,
    /// Inputs that panicked or broke a rule, with why.
    pub failures: Vec<(PathBuf, String)>,
}

/// Runs every file of `corpus` through `target`.
pub fn tally(target: Target, corpus: &Path) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut paths: Vec<PathBuf> = fs::read_dir(corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        tally.inputs += 1;
        match run_one(target, &data) {
            Ok(execution) => {
                *tally.outcomes.entry(execution.outcome.label()).or_default() += 1;
                tally.peak_bytes_max = tally.peak_bytes_max.max(execution.usage.peak_bytes);
                if let banktransfer_fuzz::Outcome::Refused { message_bytes, .. } = execution.outcome
                {
                    tally.message_bytes_max = tally.message_bytes_max.max(message_bytes);
                }
                if let Some(violation) = execution.violation() {
                    tally.failures.push((path, violation));
                }
            }
            Err(panic) => tally.failures.push((path, format!("panic: {panic}"))),
        }
    }
    Ok(tally)
}

/// Writes `target`'s seeds into `dir` as `seed-NNN`; returns how many.
pub fn write_seeds(target: Target, dir: &Path) -> anyhow::Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let seeds = seeds::seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i:03}"));
        fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}
