//! `sweep`: open-loop steps at increasing rates on one cluster (the ledger checked after
//! each), the peak sustainable rate (the highest step whose goodput is at least
//! `goodput_fraction_min` of what it offered and whose p99 is within `p99_ms`; the sweep
//! stops at the first step that is not), then `overload_factor` times the peak, and right
//! after it a low-rate probe: how long latency takes to come back to normal.

use std::time::Duration;

use serde::Serialize;

use crate::args::SweepArgs;
use crate::driver::{self, LoadReport, LoadSpec, Mode, Point, Retry};
use crate::ledger::LedgerReport;
use crate::output;
use crate::plot;
use crate::system::System;

/// The probe is judged in windows of this length.
const PROBE_WINDOW_MS: f64 = 250.0;

/// One step's figures, as peak selection and the plot need them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepPoint {
    pub offered_per_s: f64,
    pub goodput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl StepPoint {
    pub fn of(load: &LoadReport) -> StepPoint {
        StepPoint {
            offered_per_s: load.rates.offered_per_s,
            goodput_per_s: load.rates.goodput_per_s,
            p50_ms: load.latency.p50_ms,
            p99_ms: load.latency.p99_ms,
        }
    }

    pub fn sustainable(&self, p99_ms: f64, goodput_fraction_min: f64) -> bool {
        self.goodput_per_s >= goodput_fraction_min * self.offered_per_s && self.p99_ms <= p99_ms
    }
}

/// The index of the peak: the last step of the leading run of sustainable steps.
pub fn peak(steps: &[StepPoint], p99_ms: f64, goodput_fraction_min: f64) -> Option<usize> {
    steps
        .iter()
        .take_while(|s| s.sustainable(p99_ms, goodput_fraction_min))
        .count()
        .checked_sub(1)
}

/// How long after the probe's start latency is back to normal: the start of the first
/// window of [`PROBE_WINDOW_MS`] from which on every request SUCCEEDED within `p99_ms`.
/// `None` when it never is (or the probe saw nothing).
pub fn recovery_ms(probe: &[Point], p99_ms: f64) -> Option<f64> {
    let bad = |p: &Point| !p.succeeded || p.latency_ms > p99_ms;
    if probe.is_empty() {
        return None;
    }
    match probe.iter().rposition(bad) {
        None => Some(0.0),
        Some(last_bad) if last_bad + 1 == probe.len() => None,
        Some(last_bad) => {
            let after = probe[last_bad].due_ms;
            Some(((after / PROBE_WINDOW_MS).floor() + 1.0) * PROBE_WINDOW_MS)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub rate_per_s: u32,
    pub point: StepPoint,
    pub sustainable: bool,
    pub load: LoadReport,
    pub ledger: LedgerReport,
}

#[derive(Debug, Serialize)]
pub struct Overload {
    pub rate_per_s: u32,
    pub load: LoadReport,
    /// Goodput under overload over the peak's goodput.
    pub goodput_of_peak: f64,
    pub probe: LoadReport,
    /// From the end of the overload to latency back to normal (`None`: not within the
    /// probe).
    pub recovery_ms: Option<f64>,
    pub ledger: LedgerReport,
}

#[derive(Debug, Serialize)]
pub struct SweepResult {
    pub database: String,
    pub users: u32,
    pub p99_ms_bound: f64,
    pub goodput_fraction_min: f64,
    pub steps: Vec<Step>,
    pub peak_rate_per_s: Option<u32>,
    pub overload: Option<Overload>,
    pub ledger_ok: bool,
}

fn spec(args: &SweepArgs, label: String, rate: u32, warmup: u64, duration: u64) -> LoadSpec {
    LoadSpec {
        mode: Mode::Open {
            rate_per_s: rate,
            in_flight_max: args.in_flight_max,
        },
        warmup: Duration::from_secs(warmup),
        duration: Duration::from_secs(duration),
        timeout: args.system.timeout(),
        retry: Retry::None,
        label,
        progress: !args.system.no_progress,
        keep_timeline: false,
    }
}

pub async fn sweep(args: &SweepArgs) -> Result<bool, String> {
    let system = System::start(&args.system, None).await?;
    let mut steps: Vec<Step> = Vec::new();
    for rate in args.steps() {
        let before = system.baseline().await?;
        let load = driver::drive(
            system.target.clone(),
            system.book.clone(),
            spec(
                args,
                format!("step {rate}/s"),
                rate,
                args.warmup_s,
                args.duration_s,
            ),
            system.cpu_probe(),
        )
        .await;
        println!("{}", load.one_line());
        let ledger = system.check(&before, &args.system).await;
        output::print_ledger(&ledger);
        let point = StepPoint::of(&load);
        let sustainable = point.sustainable(args.p99_ms, args.goodput_fraction_min);
        let stop = !sustainable || !ledger.ok;
        steps.push(Step {
            rate_per_s: rate,
            point,
            sustainable,
            load,
            ledger,
        });
        if stop {
            break;
        }
    }
    let points: Vec<StepPoint> = steps.iter().map(|s| s.point).collect();
    let peak_index = peak(&points, args.p99_ms, args.goodput_fraction_min);
    let peak_rate = peak_index.map(|i| steps[i].rate_per_s);
    let mut ledger_ok = steps.iter().all(|s| s.ledger.ok);
    let overload = match peak_index {
        Some(i) if ledger_ok => Some(overload(args, &system, &steps[i]).await?),
        _ => None,
    };
    if let Some(o) = &overload {
        ledger_ok &= o.ledger.ok;
    }
    let result = SweepResult {
        database: args.system.database_name(),
        users: args.system.users,
        p99_ms_bound: args.p99_ms,
        goodput_fraction_min: args.goodput_fraction_min,
        steps,
        peak_rate_per_s: peak_rate,
        overload,
        ledger_ok,
    };
    println!("{}", summary(&result));
    output::write_json(&args.out, &result)?;
    plot::write(&args.plot, &result)?;
    Ok(ledger_ok)
}

async fn overload(args: &SweepArgs, system: &System, peak: &Step) -> Result<Overload, String> {
    let rate = peak.rate_per_s.saturating_mul(args.overload_factor);
    let before = system.baseline().await?;
    let overload_s = args.overload_s.unwrap_or(args.duration_s);
    let load = driver::drive(
        system.target.clone(),
        system.book.clone(),
        spec(args, format!("overload {rate}/s"), rate, 0, overload_s),
        system.cpu_probe(),
    )
    .await;
    println!("{}", load.one_line());
    let probe_rate = args.probe_rate.unwrap_or((peak.rate_per_s / 4).max(10));
    let mut probe_spec = spec(
        args,
        format!("probe {probe_rate}/s"),
        probe_rate,
        0,
        args.probe_s,
    );
    probe_spec.keep_timeline = true;
    let probe = driver::drive(system.target.clone(), system.book.clone(), probe_spec, None).await;
    println!("{}", probe.one_line());
    let recovery = recovery_ms(&probe.timeline, args.p99_ms);
    let ledger = system.check(&before, &args.system).await;
    output::print_ledger(&ledger);
    let peak_goodput = peak.point.goodput_per_s;
    Ok(Overload {
        rate_per_s: rate,
        goodput_of_peak: if peak_goodput > 0.0 {
            load.rates.goodput_per_s / peak_goodput
        } else {
            0.0
        },
        load,
        probe,
        recovery_ms: recovery,
        ledger,
    })
}

/// The one-line summary of a sweep.
pub fn summary(r: &SweepResult) -> String {
    let peak = match r.peak_rate_per_s {
        Some(rate) => format!("peak sustainable {rate}/s (p99 <= {} ms)", r.p99_ms_bound),
        None => format!("no step was sustainable (p99 <= {} ms)", r.p99_ms_bound),
    };
    let overload = match &r.overload {
        Some(o) => format!(
            "; at {}/s overload goodput {:.0}/s = {:.0}% of peak; latency normal again {} after",
            o.rate_per_s,
            o.load.rates.goodput_per_s,
            100.0 * o.goodput_of_peak,
            o.recovery_ms
                .map_or("not within the probe".to_owned(), |ms| format!(
                    "{ms:.0} ms"
                ))
        ),
        None => String::new(),
    };
    format!(
        "sweep ({}, {} users, {} steps): {peak}{overload}; ledger {}",
        r.database,
        r.users,
        r.steps.len(),
        if r.ledger_ok { "OK" } else { "FAILED" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, goodput: f64, p99: f64) -> StepPoint {
        StepPoint {
            offered_per_s: offered,
            goodput_per_s: goodput,
            p50_ms: p99 / 4.0,
            p99_ms: p99,
        }
    }

    #[test]
    fn the_peak_is_the_last_of_the_leading_sustainable_steps() {
        let steps = [
            step(100.0, 100.0, 10.0),
            step(200.0, 196.0, 30.0),
            step(400.0, 300.0, 40.0), // goodput 75%: not sustainable
            step(800.0, 800.0, 20.0), // after a failure: not counted
        ];
        assert_eq!(peak(&steps, 50.0, 0.95), Some(1));
        // A tighter latency bound moves it down; none when the first fails.
        assert_eq!(peak(&steps, 20.0, 0.95), Some(0));
        assert_eq!(peak(&steps, 5.0, 0.95), None);
        assert_eq!(peak(&[], 50.0, 0.95), None);
        assert!(step(100.0, 95.0, 50.0).sustainable(50.0, 0.95));
        assert!(!step(100.0, 94.9, 50.0).sustainable(50.0, 0.95));
    }

    fn point(due_ms: f64, latency_ms: f64, succeeded: bool) -> Point {
        Point {
            due_ms,
            latency_ms,
            succeeded,
        }
    }

    #[test]
    fn recovery_is_the_window_after_the_last_bad_request() {
        let good = |t| point(t, 5.0, true);
        assert_eq!(recovery_ms(&[good(0.0), good(100.0)], 50.0), Some(0.0));
        let probe = [
            point(0.0, 900.0, true),
            point(300.0, 10.0, false),
            good(600.0),
            good(900.0),
        ];
        assert_eq!(recovery_ms(&probe, 50.0), Some(500.0));
        // Still bad at the end of the probe: not recovered.
        assert_eq!(
            recovery_ms(&[good(0.0), point(10.0, 80.0, true)], 50.0),
            None
        );
        assert_eq!(recovery_ms(&[], 50.0), None);
    }
}
