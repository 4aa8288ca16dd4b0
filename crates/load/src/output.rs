//! What the tool prints and writes: the details of a phase, the ledger verdict, JSON files.

use std::path::Path;

use serde::Serialize;

use crate::driver::{LoadReport, Point};
use crate::ledger::LedgerReport;

pub fn print_run(load: &LoadReport, ledger: &LedgerReport) {
    let l = &load.latency;
    println!(
        "  latency (ms, {} answered): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    println!(
        "  scheduled {}  sent {}  not sent {}  SUCCEEDED {}  retries {}  abandoned {}",
        load.scheduled, load.sent, load.not_sent, load.succeeded, load.retries, load.abandoned
    );
    println!("  gRPC codes: {:?}", load.grpc_codes);
    println!("  transfers: {:?}", load.transfer_outcomes);
    if let Some(cpu) = &load.cpu {
        let per: Vec<String> = cpu
            .per_process_ms
            .iter()
            .map(|(n, ms)| format!("{n} {:.0}", ms))
            .collect();
        println!(
            "  CPU ms in the window: {} = {:.0} ({}); per SUCCEEDED transfer {}",
            per.join(" + "),
            cpu.total_ms,
            cpu.note,
            cpu.per_succeeded_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.2} ms"))
        );
    }
    print_ledger(ledger);
}

/// The `n` slowest requests, in the order they were due.
pub fn slowest(timeline: &[Point], n: usize) -> Vec<Point> {
    let mut points = timeline.to_vec();
    points.sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
    points.truncate(n);
    points.sort_by(|a, b| a.due_ms.total_cmp(&b.due_ms));
    points
}

pub fn print_slowest(timeline: &[Point], n: usize) {
    let points = slowest(timeline, n);
    println!(
        "  the {} slowest, in the order they were due:",
        points.len()
    );
    for p in points {
        println!(
            "    due at {:>9.1} ms: {:>7.1} ms{}",
            p.due_ms,
            p.latency_ms,
            if p.succeeded { "" } else { " (not SUCCEEDED)" }
        );
    }
}

pub fn print_ledger(ledger: &LedgerReport) {
    if ledger.ok {
        println!(
            "  ledger OK: client SUCCEEDED {} = debited {} = credited {} (minor units); {} looked up \
             at rest ({} SUCCEEDED, {} FAILED, {} never recorded); at rest after {} ms",
            ledger.client_succeeded_minor,
            ledger.external_debited_minor,
            ledger.balance_store_credited_minor,
            ledger.looked_up,
            ledger.looked_up_succeeded,
            ledger.looked_up_failed,
            ledger.never_recorded,
            ledger.rest_wait_ms
        );
    } else {
        println!(
            "  LEDGER CHECK FAILED ({} violations):",
            ledger.violations.len()
        );
        for v in ledger.violations.iter().take(30) {
            println!("    - {v}");
        }
    }
    for n in &ledger.notes {
        println!("  note: {n}");
    }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("  wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(due_ms: f64, latency_ms: f64) -> Point {
        Point {
            due_ms,
            latency_ms,
            succeeded: true,
        }
    }

    #[test]
    fn the_slowest_are_listed_in_the_order_they_were_due() {
        let timeline = [
            point(0.0, 5.0),
            point(5.0, 40.0),
            point(10.0, 3.0),
            point(15.0, 20.0),
            point(20.0, 30.0),
        ];
        let due: Vec<f64> = slowest(&timeline, 3).iter().map(|p| p.due_ms).collect();
        assert_eq!(due, [5.0, 15.0, 20.0]);
        assert_eq!(slowest(&timeline, 10).len(), 5);
    }
}
