//! What one simulated run is: its seed, its length, how hard the faults hit, and the
//! TEST-ONLY mutation that removes a safety mechanism.

use testkit::memory_book::BookMutation;
use testkit::memory_transfer_store::StoreMutation;

/// TEST-ONLY: one safety mechanism the simulated world leaves out, so that a test can
/// show the simulation catches its absence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutation {
    #[default]
    None,
    /// The external institution's book records no tombstone for a cancel that arrives
    /// before its reserve (see `testkit::memory_book::BookMutation`).
    ForgetTombstones,
    /// The coordinator's store writes the decision whatever the record holds (see
    /// `testkit::memory_transfer_store::StoreMutation`).
    IgnoreDecisionGuard,
}

impl Mutation {
    pub fn book(self) -> BookMutation {
        match self {
            Mutation::ForgetTombstones => BookMutation::ForgetTombstones,
            Mutation::None | Mutation::IgnoreDecisionGuard => BookMutation::None,
        }
    }

    pub fn store(self) -> StoreMutation {
        match self {
            Mutation::IgnoreDecisionGuard => StoreMutation::IgnoreDecisionGuard,
            Mutation::None | Mutation::ForgetTombstones => StoreMutation::None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Every random choice of the run flows from it.
    pub seed: u64,
    /// Simulated users, each with an external account (funded) and an internal one.
    pub users: u32,
    /// How long the users send requests and the faults strike, in simulated ms.
    pub fault_phase_ms: u64,
    /// After the fault phase, how long the system may take to settle every transfer.
    pub settle_within_ms: u64,
    /// Fault intensity, 0 (none) to 10 (harsh); scales every fault's frequency.
    pub fault_intensity: u64,
    pub mutation: Mutation,
    /// Events kept for a failure report.
    pub recent_events: usize,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            users: 3,
            fault_phase_ms: 12_000,
            settle_within_ms: 40_000,
            fault_intensity: 5,
            mutation: Mutation::None,
            recent_events: 40,
        }
    }

    pub fn with_mutation(mut self, mutation: Mutation) -> SimConfig {
        self.mutation = mutation;
        self
    }
}
