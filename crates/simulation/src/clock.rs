//! The clock the services read inside the simulation: turmoil's logical time since the
//! epoch, as seen by the host that reads it. It advances only as the simulation steps,
//! the same way on every run of a seed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use service_kit::clock::Clock;

/// When every simulated run starts: 2026-01-01T00:00:00Z. Fixed, so that every time the
/// services record is the same on every run of a seed.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(EPOCH_MS)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let since_epoch = turmoil::since_epoch().expect("the simulated clock is read by a host");
        u64::try_from(since_epoch.as_millis()).expect("simulated time fits in u64 ms")
    }
}
