//! One run: build the world and the turmoil simulation from the seed, step it one
//! simulated millisecond at a time (faults drawn before each step, safety invariants
//! checked after every step that changed a store), heal at the end of the fault phase,
//! then require the system to come to rest within a bound and check the final state and
//! every answer the users got.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use crate::clock;
use crate::config::{Mutation, SimConfig};
use crate::faults::{CALM_LATENCY_MAX, CALM_LATENCY_MIN, FaultCounts, FaultSchedule};
use crate::invariants::{self, Broken};
use crate::rng::SimRng;
use crate::trace::Trace;
use crate::workload::{self, Answer, UserPlan};
use crate::world::World;

/// The one tick: every step moves simulated time by this much.
const TICK: Duration = Duration::from_millis(1);

/// How often (in steps) the settling phase asks whether the system is at rest.
const REST_CHECK_EVERY_STEPS: u64 = 50;

/// What a passing run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub transfers: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Calls the users made, and how many were answered with a transfer.
    pub calls: usize,
    pub answered: usize,
    /// Calls the gateway refused at admission (RESOURCE_EXHAUSTED: nothing recorded).
    pub refused: usize,
    pub faults: FaultCounts,
    /// Committed state changes seen.
    pub changes: u64,
    /// Of every state change (with its step) and every answer: equal runs, equal digests.
    pub digest: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} ms simulated, {} transfers ({} succeeded, {} failed), {}/{} calls \
             answered ({} refused at admission), {} state changes, faults {:?}, digest {:016x}",
            self.seed,
            self.steps,
            self.transfers,
            self.succeeded,
            self.failed,
            self.answered,
            self.calls,
            self.refused,
            self.changes,
            self.faults,
            self.digest
        )
    }
}

/// A failed run: which invariant broke, where, and how to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub mutation: Mutation,
    pub fault_intensity: u64,
    pub invariant: &'static str,
    pub detail: String,
    pub step: u64,
    /// The last events before the failure, oldest first.
    pub recent: Vec<String>,
}

impl Failure {
    /// The one command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut env = format!("SIM_SEED={}", self.seed);
        if self.mutation != Mutation::None {
            env.push_str(&format!(" SIM_MUTATION={:?}", self.mutation));
        }
        if self.fault_intensity != SimConfig::new(self.seed).fault_intensity {
            env.push_str(&format!(" SIM_INTENSITY={}", self.fault_intensity));
        }
        format!(
            "{env} cargo test -p banktransfer-simulation --test simulate random_seeds -- --nocapture"
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {} broke invariant `{}` at step {} ({} ms simulated):",
            self.seed, self.invariant, self.step, self.step
        )?;
        writeln!(f, "  {}", self.detail)?;
        writeln!(f, "recent events (ms simulated):")?;
        for event in &self.recent {
            writeln!(f, "  {event}")?;
        }
        write!(f, "replay: {}", self.replay_command())
    }
}

thread_local! {
    /// Panics caught on this thread while a run is on (host tasks run on the test thread).
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// A panic inside a host task (a failed money assertion in a handler, say) is caught by
/// tokio and would only end that task: record it so the run fails on it.
fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICS.try_with(|panics| {
                if let Ok(mut panics) = panics.try_borrow_mut()
                    && let Some(panics) = panics.as_mut()
                {
                    panics.push(info.to_string());
                }
            });
            previous(info);
        }));
    });
    PANICS.with(|panics| *panics.borrow_mut() = Some(Vec::new()));
}

fn take_panic() -> Option<String> {
    PANICS.with(|panics| {
        panics
            .borrow_mut()
            .as_mut()
            .and_then(|p| (!p.is_empty()).then(|| p.remove(0)))
    })
}

fn stop_watching_panics() {
    PANICS.with(|panics| *panics.borrow_mut() = None);
}

/// One run at a time per process: see [`align_task_ids`].
static RUNS: Mutex<()> = Mutex::new(());

/// Task ids are aligned to a multiple of this at the start of every run.
const TASK_ID_ALIGNMENT: u64 = 1 << 10;

/// Tokio numbers tasks from one process-wide counter and files each runtime's tasks in
/// shards chosen by id; when turmoil crashes or restarts a host it drops the host's
/// runtime, which drops the tasks shard by shard. Their drops close simulated sockets,
/// which sends FIN or RST segments, each drawing its latency from turmoil's one random
/// stream: so the order of the draws, and everything after, would depend on how many
/// tasks the process spawned before the run. Runs are therefore serialized (nothing
/// else spawns tasks meanwhile) and each starts with the counter at the same residue.
fn align_task_ids() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime to align task ids on");
    loop {
        let task = runtime.spawn(async {});
        let id: u64 = task
            .id()
            .to_string()
            .parse()
            .expect("tokio task ids display as numbers");
        if (id + 1).is_multiple_of(TASK_ID_ALIGNMENT) {
            break;
        }
    }
}

/// Runs the simulation `config` describes. Runs in one process take turns.
pub fn run(config: SimConfig) -> Result<Report, Failure> {
    let _turn = RUNS.lock().unwrap_or_else(PoisonError::into_inner);
    align_task_ids();
    watch_panics();
    let result = run_watched(config);
    stop_watching_panics();
    result
}

fn run_watched(config: SimConfig) -> Result<Report, Failure> {
    let seed = config.seed;
    let mutation = config.mutation;
    let fault_intensity = config.fault_intensity;
    let world = World::new(config.clone());
    let fail = |broken: Broken, step: u64, world: &World| Failure {
        seed,
        mutation,
        fault_intensity,
        invariant: broken.invariant,
        detail: broken.detail,
        step,
        recent: world.log.recent(),
    };

    let mut sim = turmoil::Builder::new()
        .rng_seed(SimRng::derive(seed, "turmoil"))
        .epoch(clock::epoch())
        .tick_duration(TICK)
        // The runner bounds the run itself; turmoil's own bound stays out of the way.
        .simulation_duration(Duration::from_millis(
            10 * (config.fault_phase_ms + config.settle_within_ms),
        ))
        .min_message_latency(CALM_LATENCY_MIN)
        .max_message_latency(CALM_LATENCY_MAX)
        // Receive buffers (in segments) large enough that only faults reset connections.
        .tcp_capacity(4_096)
        .build();
    world.register_hosts(&mut sim);
    for (index, user) in world.users.iter().enumerate() {
        let plan = UserPlan {
            user: user.clone(),
            seed: SimRng::derive(seed, &format!("user-{index}")),
            until_ms: config.fault_phase_ms,
            observations: world.observations.clone(),
            log: world.log.clone(),
        };
        sim.client(user.user_id.as_str(), workload::run(plan));
    }
    let user_ids: Vec<String> = world.users.iter().map(|u| u.user_id.clone()).collect();
    let mut faults = FaultSchedule::new(seed, config.fault_intensity, &user_ids);
    FaultSchedule::calm(&mut sim, &world);
    let mut trace = Trace::default();

    let settle_deadline_ms = config.fault_phase_ms + config.settle_within_ms;
    let mut healed = false;
    let mut step: u64 = 0;
    loop {
        let now_ms = step;
        step += 1;
        if now_ms < config.fault_phase_ms {
            faults.before_step(now_ms, &mut sim, &world);
        } else if !healed {
            faults.heal(now_ms, &mut sim, &world);
            healed = true;
        }
        let users_done = match sim.step() {
            Ok(done) => done,
            Err(err) => {
                let broken = Broken {
                    invariant: "host_failed",
                    detail: err.to_string(),
                };
                return Err(fail(broken, step, &world));
            }
        };
        if let Some(panic) = take_panic() {
            let broken = Broken {
                invariant: "panic",
                detail: panic,
            };
            return Err(fail(broken, step, &world));
        }
        if trace.observe(step, &world) {
            invariants::check_safety(&world).map_err(|b| fail(b, step, &world))?;
        }
        if healed && step.is_multiple_of(REST_CHECK_EVERY_STEPS) {
            let unsettled = if users_done {
                invariants::unsettled(&world)
            } else {
                Some("the users' last calls have not returned".to_owned())
            };
            match unsettled {
                None => break,
                Some(why) if step >= settle_deadline_ms => {
                    let broken = Broken {
                        invariant: "settles_after_faults",
                        detail: format!(
                            "not at rest {} ms after the faults ended: {why}",
                            config.settle_within_ms
                        ),
                    };
                    return Err(fail(broken, step, &world));
                }
                Some(_) => {}
            }
        }
    }

    let observations = world.observations();
    invariants::check_at_rest(&world, &observations).map_err(|b| fail(b, step, &world))?;
    trace.fold(&observations);
    let records = world.coordinator.snapshot();
    let count = |state| records.values().filter(|r| r.state == state).count();
    use banktransfer_protocol::transfer::RecordedState;
    Ok(Report {
        seed,
        steps: step,
        transfers: records.len(),
        succeeded: count(RecordedState::Succeeded),
        failed: count(RecordedState::Failed),
        calls: observations.len(),
        answered: observations
            .iter()
            .filter(|o| matches!(o.answer, Answer::Transfer { .. }))
            .count(),
        refused: observations
            .iter()
            .filter(|o| o.answer == Answer::Error(tonic::Code::ResourceExhausted))
            .count(),
        faults: faults.counts,
        changes: trace.changes(),
        digest: trace.digest(),
    })
}
