//! What a run leaves behind: a bounded log of recent events for failure reports, and a
//! digest of the whole run (every committed change, with the step it happened at) that
//! two runs of one seed must agree on.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use banktransfer_protocol::reservation::ReservationStatus;
use banktransfer_protocol::transfer::RecordedState;
use testkit::memory_book::{MemoryBook, MemoryScreening};

use crate::world::World;

/// The last events of a run, oldest first.
#[derive(Debug)]
pub struct EventLog {
    capacity: usize,
    events: VecDeque<String>,
}

/// Shared by the runner (faults, state changes) and the users (requests, answers).
#[derive(Clone, Debug)]
pub struct SharedLog(Arc<Mutex<EventLog>>);

impl SharedLog {
    pub fn new(capacity: usize) -> SharedLog {
        SharedLog(Arc::new(Mutex::new(EventLog {
            capacity: capacity.max(1),
            events: VecDeque::new(),
        })))
    }

    pub fn push(&self, at_ms: u64, event: impl Into<String>) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if log.events.len() == log.capacity {
            log.events.pop_front();
        }
        log.events
            .push_back(format!("{at_ms:>7} ms  {}", event.into()));
    }

    pub fn recent(&self) -> Vec<String> {
        let log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.events.iter().cloned().collect()
    }
}

/// A leg's reservation as the trace names it.
fn reservation_name(status: &ReservationStatus, tombstone: bool) -> &'static str {
    match status {
        ReservationStatus::Cancelled if tombstone => "tombstone",
        other => other.as_str(),
    }
}

fn diff_book<S: MemoryScreening>(
    name: &str,
    book: &MemoryBook<S>,
    seen: &mut BTreeMap<String, &'static str>,
    changes: &mut Vec<String>,
) {
    book.inspect(|book| {
        for (id, stored) in &book.reservations {
            let status = reservation_name(
                &stored.reservation.status,
                stored.reservation.terms.is_none(),
            );
            let before = seen.insert(id.clone(), status);
            if before != Some(status) {
                changes.push(format!(
                    "{name} reservation {id} {} -> {status}",
                    before.unwrap_or("none")
                ));
            }
        }
    });
}

/// Watches the stores step by step: logs every change of a transfer's recorded state or
/// of a reservation's status, and folds each into the run's digest.
pub struct Trace {
    digest: DefaultHasher,
    versions: (u64, u64, u64),
    transfers: BTreeMap<String, RecordedState>,
    reservations: [BTreeMap<String, &'static str>; 2],
    changes: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            // Fixed keys: the same on every run and every process.
            digest: DefaultHasher::new(),
            versions: (0, 0, 0),
            transfers: BTreeMap::new(),
            reservations: [BTreeMap::new(), BTreeMap::new()],
            changes: 0,
        }
    }
}

impl Trace {
    /// Looks at the stores after `step`; returns whether anything changed since the
    /// last look (only then can an invariant have changed its verdict).
    pub fn observe(&mut self, step: u64, world: &World) -> bool {
        let versions = (
            world.coordinator.version(),
            world.external.version(),
            world.balance_store.version(),
        );
        if versions == self.versions {
            return false;
        }
        self.versions = versions;
        let log = &world.log;
        let mut changes = Vec::new();
        world.coordinator.inspect(|records| {
            for (id, record) in records {
                let before = self.transfers.insert(id.clone(), record.state);
                if before != Some(record.state) {
                    let from = before.map_or("new", RecordedState::as_str);
                    changes.push(format!(
                        "transfer {id} {from} -> {}{}",
                        record.state.as_str(),
                        record
                            .failure_reason
                            .as_deref()
                            .filter(|_| record.state == RecordedState::Aborted)
                            .map(|why| format!(" ({why})"))
                            .unwrap_or_default()
                    ));
                }
            }
        });
        diff_book(
            "external",
            &world.external,
            &mut self.reservations[0],
            &mut changes,
        );
        diff_book(
            "balance_store",
            &world.balance_store,
            &mut self.reservations[1],
            &mut changes,
        );
        for change in changes {
            step.hash(&mut self.digest);
            change.hash(&mut self.digest);
            self.changes += 1;
            log.push(step, change);
        }
        true
    }

    /// Folds anything else the run must reproduce (the users' answers, say).
    pub fn fold(&mut self, value: impl Hash) {
        value.hash(&mut self.digest);
    }

    pub fn digest(&self) -> u64 {
        self.digest.finish()
    }

    /// State changes seen so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}
