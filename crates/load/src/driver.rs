//! Drives load: the open loop (a constant arrival rate, each request timed from its
//! scheduled send; at most `in_flight_max` outstanding, a request due beyond that is
//! counted NOT SENT instead of being delayed) and the closed loop (`concurrency` clients,
//! each sending its next request when the previous one is answered). One tokio runtime,
//! the target's few shared channels; a progress bar on stderr.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use banktransfer_api::gateway::v1::{Transfer, TransferStatus};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use serde::Serialize;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::cpu::{self, CpuProbe, CpuReport};
use crate::ledger::ClientBook;
use crate::schedule::OpenSchedule;
use crate::stats::{Outcome, Percentiles, Rates, Recorder, Sample, normalize_reason};
use crate::target::{Target, code_name};
use crate::users;

/// How long the tool waits for outstanding requests after the last send: the longest a
/// request can take (its retries included) plus a margin.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Open { rate_per_s: u32, in_flight_max: u32 },
    Closed { concurrency: u32 },
}

/// What a client does with an answer that is not final (an error, a deadline, PROCESSING).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Nothing: the ledger check looks the transfer up at rest.
    None,
    /// Again with the same key after 100 ms, doubling to 2 s, jittered; for up to 60 s.
    Backoff,
    /// Again with the same key every 100 ms, for up to 60 s.
    Aggressive,
}

/// Retries of one transfer stop after this long (from its first send).
pub const RETRY_WINDOW: Duration = Duration::from_secs(60);
const RETRY_DELAY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

impl Retry {
    /// The pause before retry number `retry` (0 for the first), before jitter.
    pub fn delay(self, retry: u32) -> Duration {
        match self {
            Retry::None => Duration::ZERO,
            Retry::Aggressive => RETRY_DELAY_INITIAL,
            Retry::Backoff => {
                let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
                RETRY_DELAY_INITIAL
                    .saturating_mul(factor)
                    .min(RETRY_DELAY_MAX)
            }
        }
    }

    /// Bound on calls for one transfer.
    pub fn calls_max(self) -> u32 {
        match self {
            Retry::None => 1,
            // 60 s at one call per 100 ms, plus the first.
            Retry::Backoff | Retry::Aggressive => 601,
        }
    }
}

/// One load phase.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// The client's deadline per call.
    pub timeout: Duration,
    pub retry: Retry,
    pub label: String,
    pub progress: bool,
    /// Keep each measured request's (scheduled offset, latency, SUCCEEDED) for the
    /// recovery analysis.
    pub keep_timeline: bool,
}

/// One request on the timeline: when it was due (after the measured window's start), how
/// long it took, whether it SUCCEEDED.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub due_ms: f64,
    pub latency_ms: f64,
    pub succeeded: bool,
}

/// What a load phase measured (its window: after the warm-up).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub label: String,
    pub mode: Mode,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub not_sent: u64,
    pub answered: u64,
    pub succeeded: u64,
    pub retries: u64,
    pub rates: Rates,
    pub latency: Percentiles,
    pub latency_succeeded: Percentiles,
    pub grpc_codes: std::collections::BTreeMap<String, u64>,
    pub transfer_outcomes: std::collections::BTreeMap<String, u64>,
    pub cpu: Option<CpuReport>,
    #[serde(skip)]
    pub timeline: Vec<Point>,
    /// Requests still unanswered when the drain wait ran out (should be 0).
    pub abandoned: u64,
}

impl LoadReport {
    /// One line for people.
    pub fn one_line(&self) -> String {
        let cpu = self
            .cpu
            .as_ref()
            .and_then(|c| c.per_succeeded_ms)
            .map_or(String::new(), |ms| format!(", CPU {ms:.2} ms/transfer"));
        format!(
            "{}: offered {:.0}/s, sent {:.0}/s, goodput {:.0} SUCCEEDED/s ({} of {} sent, {} not sent); \
             latency p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} ms{cpu}",
            self.label,
            self.rates.offered_per_s,
            self.rates.sent_per_s,
            self.rates.goodput_per_s,
            self.succeeded,
            self.sent,
            self.not_sent,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
        )
    }
}

/// Shared by every request task of a phase.
struct Shared {
    target: Arc<Target>,
    book: Arc<ClientBook>,
    spec: LoadSpec,
    recorder: Mutex<Recorder>,
    timeline: Mutex<Vec<Point>>,
    /// When the measured window starts.
    measured_from: Instant,
    done: AtomicU64,
    succeeded: AtomicU64,
    in_flight: AtomicU64,
}

impl Shared {
    fn record(&self, due: Instant, sample: Sample) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if sample.outcome.succeeded() {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        if due < self.measured_from {
            return;
        }
        if self.spec.keep_timeline && sample.outcome != Outcome::NotSent {
            self.timeline.lock().expect("timeline").push(Point {
                due_ms: (due - self.measured_from).as_secs_f64() * 1000.0,
                latency_ms: sample.latency.as_secs_f64() * 1000.0,
                succeeded: sample.outcome.succeeded(),
            });
        }
        self.recorder.lock().expect("recorder").record(&sample);
    }
}

fn is_final(answer: &Result<Transfer, Status>) -> bool {
    matches!(answer, Ok(t) if matches!(t.status(), TransferStatus::Succeeded | TransferStatus::Failed))
}

/// One transfer, retried by the phase's policy; timed from `origin`.
async fn transfer(shared: &Shared, sequence: u64, origin: Instant) -> Sample {
    let user = users::user_of(sequence, shared.target.users());
    let key = uuid::Uuid::now_v7().to_string();
    let retry = shared.spec.retry;
    let mut calls = 0u32;
    let answer = loop {
        calls += 1;
        let answer = shared.target.approve(user, &key, shared.spec.timeout).await;
        let delay = retry.delay(calls - 1);
        let jittered = if retry == Retry::Backoff {
            delay / 2 + delay.mul_f64(rand::rng().random_range(0.0..0.5))
        } else {
            delay
        };
        if is_final(&answer)
            || calls >= retry.calls_max()
            || origin.elapsed() + jittered > RETRY_WINDOW
        {
            break answer;
        }
        tokio::time::sleep(jittered).await;
    };
    shared.book.settle(user, key, answer.as_ref().ok());
    let outcome = match &answer {
        Ok(t) => Outcome::Answered {
            status: t
                .status()
                .as_str_name()
                .trim_start_matches("TRANSFER_STATUS_")
                .to_owned(),
            reason: normalize_reason(&t.failure_reason, &users::user_id(user)),
        },
        Err(status) => Outcome::Error {
            code: code_name(status.code()),
        },
    };
    Sample {
        outcome,
        latency: origin.elapsed(),
        calls,
    }
}

fn progress_bar(spec: &LoadSpec, length: u64) -> ProgressBar {
    if !spec.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    bar.set_prefix(spec.label.clone());
    bar
}

/// Runs one phase to the end (every request answered, or the drain wait over).
pub async fn drive(
    target: Arc<Target>,
    book: Arc<ClientBook>,
    spec: LoadSpec,
    cpu_probe: Option<CpuProbe>,
) -> LoadReport {
    let start = Instant::now() + Duration::from_millis(20);
    let measured_from = start + spec.warmup;
    let end = measured_from + spec.duration;
    let shared = Arc::new(Shared {
        target,
        book,
        spec: spec.clone(),
        recorder: Mutex::new(Recorder::default()),
        timeline: Mutex::new(Vec::new()),
        measured_from,
        done: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
    });
    let cpu_at_start = {
        let probe = cpu_probe.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measured_from.into()).await;
            probe.map(|p| p.sample())
        })
    };
    let (scheduled, total) = match spec.mode {
        Mode::Open { rate_per_s, .. } => {
            let s = OpenSchedule::new(rate_per_s);
            let total = s.count_within(spec.warmup + spec.duration);
            (total - s.count_within(spec.warmup), total)
        }
        Mode::Closed { .. } => (0, spec.duration.as_secs() + spec.warmup.as_secs()),
    };
    let bar = progress_bar(&spec, total);
    let ticker = {
        let shared = Arc::clone(&shared);
        let bar = bar.clone();
        let closed = matches!(spec.mode, Mode::Closed { .. });
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let done = shared.done.load(Ordering::Relaxed);
                if closed {
                    bar.set_position(start.elapsed().as_secs());
                }
                bar.set_message(format!(
                    "done {done} ok {} in flight {}",
                    shared.succeeded.load(Ordering::Relaxed),
                    shared.in_flight.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let drain_limit = spec
        .timeout
        .max(RETRY_WINDOW * u32::from(spec.retry != Retry::None))
        + DRAIN_MARGIN;
    let abandoned = match spec.mode {
        Mode::Open {
            rate_per_s,
            in_flight_max,
        } => {
            open_loop(
                &shared,
                OpenSchedule::new(rate_per_s),
                total,
                start,
                in_flight_max,
                &bar,
                drain_limit,
            )
            .await
        }
        Mode::Closed { concurrency } => {
            closed_loop(&shared, concurrency, start, end, drain_limit).await
        }
    };
    ticker.abort();
    let cpu_before = cpu_at_start.await.ok().flatten();
    let cpu_after = cpu_probe.as_ref().map(CpuProbe::sample);
    bar.finish_and_clear();

    let recorder = shared.recorder.lock().expect("recorder").clone();
    let scheduled = match spec.mode {
        Mode::Open { .. } => scheduled,
        Mode::Closed { .. } => recorder.sent,
    };
    let cpu = match (cpu_before, cpu_after, &cpu_probe) {
        (Some(before), Some(after), Some(probe)) => Some(cpu::report(
            &before,
            &after,
            recorder.succeeded,
            probe.note(),
        )),
        _ => None,
    };
    let mut timeline = std::mem::take(&mut *shared.timeline.lock().expect("timeline"));
    timeline.sort_by(|a, b| a.due_ms.total_cmp(&b.due_ms));
    LoadReport {
        label: spec.label.clone(),
        mode: spec.mode,
        warmup_s: spec.warmup.as_secs_f64(),
        duration_s: spec.duration.as_secs_f64(),
        scheduled,
        sent: recorder.sent,
        not_sent: recorder.not_sent,
        answered: recorder.answered(),
        succeeded: recorder.succeeded,
        retries: recorder.retries,
        rates: Rates::of(scheduled, recorder.sent, recorder.succeeded, spec.duration),
        latency: recorder.latency(),
        latency_succeeded: recorder.latency_succeeded(),
        grpc_codes: recorder.grpc_codes.clone(),
        transfer_outcomes: recorder.transfer_outcomes.clone(),
        cpu,
        timeline,
        abandoned,
    }
}

/// Sends `total` requests on `schedule`; returns how many were still outstanding when the
/// drain wait ran out.
async fn open_loop(
    shared: &Arc<Shared>,
    schedule: OpenSchedule,
    total: u64,
    start: Instant,
    in_flight_max: u32,
    bar: &ProgressBar,
    drain_limit: Duration,
) -> u64 {
    let gate = Arc::new(Semaphore::new(in_flight_max as usize));
    for i in 0..total {
        let due = start + schedule.offset(i);
        tokio::time::sleep_until(due.into()).await;
        bar.set_position(i + 1);
        let sequence = shared.book.next_sequence();
        match Arc::clone(&gate).try_acquire_owned() {
            Ok(permit) => {
                let shared = Arc::clone(shared);
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let sample = transfer(&shared, sequence, due).await;
                    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                    shared.record(due, sample);
                    drop(permit);
                });
            }
            Err(_) => shared.record(
                due,
                Sample {
                    outcome: Outcome::NotSent,
                    latency: Duration::ZERO,
                    calls: 0,
                },
            ),
        }
    }
    // Every permit back: every request answered.
    let drained = tokio::time::timeout(drain_limit, gate.acquire_many(in_flight_max)).await;
    if drained.is_ok() {
        0
    } else {
        shared.in_flight.load(Ordering::Relaxed)
    }
}

/// `concurrency` clients send back to back until `end`; returns how many were still
/// outstanding when the drain wait ran out.
async fn closed_loop(
    shared: &Arc<Shared>,
    concurrency: u32,
    start: Instant,
    end: Instant,
    drain_limit: Duration,
) -> u64 {
    tokio::time::sleep_until(start.into()).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let shared = Arc::clone(shared);
        clients.spawn(async move {
            while Instant::now() < end {
                let sequence = shared.book.next_sequence();
                let origin = Instant::now();
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                let sample = transfer(&shared, sequence, origin).await;
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                shared.record(origin, sample);
            }
        });
    }
    let deadline = end + drain_limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), clients.join_next()).await {
            Ok(Some(joined)) => joined.expect("a client task does not panic"),
            Ok(None) => return 0,
            Err(_) => {
                let abandoned = shared.in_flight.load(Ordering::Relaxed);
                clients.abort_all();
                return abandoned;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_two_seconds_and_aggressive_stays_at_100_ms() {
        let delays: Vec<u64> = (0..7)
            .map(|r| Retry::Backoff.delay(r).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(Retry::Backoff.delay(1000), Duration::from_secs(2));
        assert_eq!(Retry::Aggressive.delay(50), Duration::from_millis(100));
        assert_eq!(Retry::None.calls_max(), 1);
        // The aggressive client's call bound covers its 60 s window.
        assert!(RETRY_DELAY_INITIAL * (Retry::Aggressive.calls_max() - 1) >= RETRY_WINDOW);
    }
}
