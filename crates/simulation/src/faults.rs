//! The fault schedule: between steps of the fault phase it draws, from the run's seeded
//! stream, what goes wrong next and for how long: partitions and one-way partitions
//! between hosts (in-flight messages dropped), held links (messages delayed, then
//! delivered), random message loss and slow links, process crashes and restarts, database
//! weather (slow, flaky, lost replies, down), and the external institution's own injected
//! faults. At the end of the fault phase it heals everything.

use std::time::Duration;

use mock_external_institution::fault_injection::lock;
use mock_external_institution::faults::{FaultKind, Operation, Target};

use crate::rng::SimRng;
use crate::trace::SharedLog;
use crate::weather::{SharedWeather, Weather};
use crate::world::{BALANCE_STORE, EXTERNAL, GATEWAY, RECONCILER, SERVICES, World};

/// Message latency on every link when nothing is wrong.
pub const CALM_LATENCY_MIN: Duration = Duration::from_millis(1);
pub const CALM_LATENCY_MAX: Duration = Duration::from_millis(10);

/// Every store call waits up to this long when nothing is wrong, so that calls from
/// different hosts interleave as they would on a real database.
const CALM_DB_DELAY_MAX_MS: u64 = 2;

/// Faults of one kind active at once, at most.
const LINK_FAULTS_MAX: usize = 2;

/// How often each kind of fault starts, per million simulated milliseconds, at
/// intensity 1 (the run's intensity multiplies them).
const PARTITION_PER_MILLION: u64 = 150;
const HOLD_PER_MILLION: u64 = 100;
const CRASH_PER_MILLION: u64 = 60;
const WEATHER_PER_MILLION: u64 = 150;
const NETWORK_PER_MILLION: u64 = 40;
const INSTITUTION_FAULT_PER_MILLION: u64 = 40;

/// What the schedule did, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultCounts {
    pub partitions: u32,
    pub holds: u32,
    pub crashes: u32,
    pub weather_changes: u32,
    pub network_changes: u32,
    pub institution_faults: u32,
}

#[derive(Clone, Debug)]
struct LinkFault {
    a: String,
    b: String,
    kind: LinkKind,
    until_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkKind {
    Partition,
    /// Only `a` -> `b` is cut.
    OneWay,
    Hold,
}

pub struct FaultSchedule {
    rng: SimRng,
    intensity: u64,
    hosts: Vec<String>,
    links: Vec<LinkFault>,
    /// Crashed hosts and when they restart.
    crashed: Vec<(&'static str, u64)>,
    /// When each store's weather turns calm again (coordinator, external, balance store).
    weather_until_ms: [Option<u64>; 3],
    network_until_ms: Option<u64>,
    pub counts: FaultCounts,
}

impl FaultSchedule {
    pub fn new(seed: u64, intensity: u64, users: &[String]) -> FaultSchedule {
        let mut hosts: Vec<String> = SERVICES.iter().map(|s| (*s).to_owned()).collect();
        hosts.extend(users.iter().cloned());
        FaultSchedule {
            rng: SimRng::stream(seed, "faults"),
            intensity,
            hosts,
            links: Vec::new(),
            crashed: Vec::new(),
            weather_until_ms: [None; 3],
            network_until_ms: None,
            counts: FaultCounts::default(),
        }
    }

    /// The calm state every run starts in.
    pub fn calm(sim: &mut turmoil::Sim<'_>, world: &World) {
        sim.set_max_message_latency(CALM_LATENCY_MAX);
        sim.set_fail_rate(0.0);
        for weather in weathers(world) {
            weather.set(calm_weather());
        }
    }

    fn starts(&mut self, per_million_at_one: u64) -> bool {
        self.rng.chance(per_million_at_one * self.intensity)
    }

    /// Ends what is due and starts what the dice say, before the step at `now_ms`.
    pub fn before_step(&mut self, now_ms: u64, sim: &mut turmoil::Sim<'_>, world: &World) {
        let log = &world.log;
        self.end_due(now_ms, sim, world);
        if self.intensity == 0 {
            return;
        }
        if self.starts(PARTITION_PER_MILLION) {
            self.start_link_fault(now_ms, sim, log, false);
        }
        if self.starts(HOLD_PER_MILLION) {
            self.start_link_fault(now_ms, sim, log, true);
        }
        if self.starts(CRASH_PER_MILLION) {
            self.crash(now_ms, sim, log);
        }
        if self.starts(WEATHER_PER_MILLION) {
            self.change_weather(now_ms, world);
        }
        if self.starts(NETWORK_PER_MILLION) && self.network_until_ms.is_none() {
            self.change_network(now_ms, sim, log);
        }
        if self.starts(INSTITUTION_FAULT_PER_MILLION) {
            self.inject_institution_fault(now_ms, world);
        }
    }

    fn end_due(&mut self, now_ms: u64, sim: &mut turmoil::Sim<'_>, world: &World) {
        let (due, kept): (Vec<LinkFault>, Vec<LinkFault>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|fault| fault.until_ms <= now_ms);
        self.links = kept;
        for fault in due {
            end_link_fault(&fault, sim, &world.log, now_ms);
        }
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.crashed)
            .into_iter()
            .partition(|(_, at)| *at <= now_ms);
        self.crashed = kept;
        for (host, _) in due {
            world.log.push(now_ms, format!("fault: {host} restarts"));
            sim.bounce(host);
        }
        for (index, weather) in weathers(world).into_iter().enumerate() {
            if self.weather_until_ms[index].is_some_and(|until| until <= now_ms) {
                self.weather_until_ms[index] = None;
                weather.set(calm_weather());
                world.log.push(
                    now_ms,
                    format!("fault: {} database calm", STORE_NAMES[index]),
                );
            }
        }
        if self.network_until_ms.is_some_and(|until| until <= now_ms) {
            self.network_until_ms = None;
            sim.set_fail_rate(0.0);
            sim.set_max_message_latency(CALM_LATENCY_MAX);
            world.log.push(now_ms, "fault: network calm");
        }
    }

    fn start_link_fault(
        &mut self,
        now_ms: u64,
        sim: &mut turmoil::Sim<'_>,
        log: &SharedLog,
        hold: bool,
    ) {
        if self.links.len() >= LINK_FAULTS_MAX {
            return;
        }
        let a = self.rng.pick(&self.hosts).clone();
        let b = self.rng.pick(&self.hosts).clone();
        let busy = |x: &str| self.links.iter().any(|f| f.a == x || f.b == x);
        // Two users never talk to each other, and one fault per host keeps turmoil's
        // holds and one-way partitions apart (it cannot combine them).
        if a == b || (is_user(&a) && is_user(&b)) || busy(&a) || busy(&b) {
            return;
        }
        let kind = if hold {
            LinkKind::Hold
        } else if self.rng.chance(300_000) {
            LinkKind::OneWay
        } else {
            LinkKind::Partition
        };
        let duration_ms = if self.rng.chance(800_000) {
            self.rng.between(20, 600)
        } else {
            self.rng.between(600, 3_000)
        };
        match kind {
            LinkKind::Partition => {
                sim.partition(a.as_str(), b.as_str());
                self.counts.partitions += 1;
            }
            LinkKind::OneWay => {
                sim.partition_oneway(a.as_str(), b.as_str());
                self.counts.partitions += 1;
            }
            LinkKind::Hold => {
                sim.hold(a.as_str(), b.as_str());
                self.counts.holds += 1;
            }
        }
        log.push(
            now_ms,
            format!("fault: {kind:?} {a} / {b} for {duration_ms} ms"),
        );
        self.links.push(LinkFault {
            a,
            b,
            kind,
            until_ms: now_ms + duration_ms,
        });
    }

    fn crash(&mut self, now_ms: u64, sim: &mut turmoil::Sim<'_>, log: &SharedLog) {
        let host = *self.rng.pick(&SERVICES);
        if self.crashed.iter().any(|(h, _)| *h == host) {
            return;
        }
        self.counts.crashes += 1;
        if self.rng.chance(300_000) {
            log.push(
                now_ms,
                format!("fault: {host} crashes and restarts at once"),
            );
            sim.bounce(host);
            return;
        }
        let down_ms = self.rng.between(50, 3_000);
        log.push(now_ms, format!("fault: {host} crashes for {down_ms} ms"));
        sim.crash(host);
        self.crashed.push((host, now_ms + down_ms));
    }

    fn change_weather(&mut self, now_ms: u64, world: &World) {
        let index = self.rng.below(3) as usize;
        let weather = match self.rng.below(10) {
            0..=3 => Weather {
                delay_ms_max: self.rng.between(2, 30),
                slow_per_million: self.rng.between(10_000, 100_000),
                slow_ms_max: self.rng.between(100, 1_500),
                ..Weather::default()
            },
            4..=7 => Weather {
                delay_ms_max: CALM_DB_DELAY_MAX_MS,
                fail_per_million: self.rng.between(50_000, 400_000),
                ..Weather::default()
            },
            _ => Weather {
                down: true,
                ..Weather::default()
            },
        };
        let duration_ms = self.rng.between(100, 2_500);
        self.weather_until_ms[index] = Some(now_ms + duration_ms);
        weathers(world)[index].set(weather);
        self.counts.weather_changes += 1;
        world.log.push(
            now_ms,
            format!(
                "fault: {} database {weather:?} for {duration_ms} ms",
                STORE_NAMES[index]
            ),
        );
    }

    fn change_network(&mut self, now_ms: u64, sim: &mut turmoil::Sim<'_>, log: &SharedLog) {
        let duration_ms = self.rng.between(200, 2_000);
        if self.rng.chance(500_000) {
            // Per message: a link that drops one drops everything in flight on it.
            let fail_rate = self.rng.between(1, 20) as f64 / 10_000.0;
            sim.set_fail_rate(fail_rate);
            log.push(
                now_ms,
                format!("fault: message loss {fail_rate} for {duration_ms} ms"),
            );
        } else {
            let max_ms = self.rng.between(30, 250);
            sim.set_max_message_latency(Duration::from_millis(max_ms));
            log.push(
                now_ms,
                format!("fault: latency up to {max_ms} ms for {duration_ms} ms"),
            );
        }
        self.network_until_ms = Some(now_ms + duration_ms);
        self.counts.network_changes += 1;
    }

    fn inject_institution_fault(&mut self, now_ms: u64, world: &World) {
        let target = match self.rng.below(4) {
            0 => Target::Any,
            1 => Target::Only(Operation::Reserve),
            2 => Target::Only(Operation::Confirm),
            _ => Target::Only(Operation::Cancel),
        };
        let kind = match self.rng.below(4) {
            0 => FaultKind::Error,
            1 => FaultKind::Unavailable,
            2 => FaultKind::LoseReply,
            _ => FaultKind::Latency {
                latency_ms: u32::try_from(self.rng.between(10, 400)).expect("small"),
            },
        };
        let calls = u32::try_from(self.rng.between(1, 4)).expect("small");
        if lock(&world.institution_faults)
            .inject(target, kind, calls)
            .is_ok()
        {
            self.counts.institution_faults += 1;
            world.log.push(
                now_ms,
                format!("fault: external institution {kind:?} on {target:?} x{calls}"),
            );
        }
    }

    /// Ends every fault: links repaired and released, crashed hosts restarted, databases
    /// and network calm, the institution's fault list cleared.
    pub fn heal(&mut self, now_ms: u64, sim: &mut turmoil::Sim<'_>, world: &World) {
        for fault in std::mem::take(&mut self.links) {
            end_link_fault(&fault, sim, &world.log, now_ms);
        }
        for (host, _) in std::mem::take(&mut self.crashed) {
            world.log.push(now_ms, format!("heal: {host} restarts"));
            sim.bounce(host);
        }
        self.weather_until_ms = [None; 3];
        self.network_until_ms = None;
        FaultSchedule::calm(sim, world);
        lock(&world.institution_faults).clear();
        world.log.push(now_ms, "heal: every fault ended");
    }
}

const STORE_NAMES: [&str; 3] = ["coordinator", EXTERNAL, BALANCE_STORE];

fn weathers(world: &World) -> [&SharedWeather; 3] {
    [
        &world.coordinator_weather,
        &world.external_weather,
        &world.balance_store_weather,
    ]
}

fn calm_weather() -> Weather {
    Weather {
        delay_ms_max: CALM_DB_DELAY_MAX_MS,
        ..Weather::default()
    }
}

fn is_user(host: &str) -> bool {
    ![GATEWAY, EXTERNAL, BALANCE_STORE, RECONCILER].contains(&host)
}

fn end_link_fault(fault: &LinkFault, sim: &mut turmoil::Sim<'_>, log: &SharedLog, now_ms: u64) {
    let (a, b) = (fault.a.as_str(), fault.b.as_str());
    match fault.kind {
        LinkKind::Partition => sim.repair(a, b),
        LinkKind::OneWay => sim.repair_oneway(a, b),
        LinkKind::Hold => sim.release(a, b),
    }
    log.push(now_ms, format!("fault: {:?} {a} / {b} ends", fault.kind));
}
