//! The simulated databases' weather: how slow and how unreliable each store is right now.
//! The fault schedule changes it between steps; each store's failure planner draws every
//! call's plan (`testkit::sim_db::FailurePlan`) from it with a seeded stream of its own, in
//! the (deterministic) order the calls arrive.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use testkit::sim_db::{Failure, FailurePlan, FailurePlanner};

use crate::rng::SimRng;

/// One store's weather. The default is calm: no delay, no failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weather {
    /// Every call waits up to this long (uniform).
    pub delay_ms_max: u64,
    /// Calls that are slow on top of that, per million, and how slow: half of them
    /// waiting for a connection, half in flight in the database.
    pub slow_per_million: u64,
    pub slow_ms_max: u64,
    /// Calls that fail, per million; half before applying, half after (reply lost).
    pub fail_per_million: u64,
    /// The database is down: every call fails before applying.
    pub down: bool,
}

/// A store's weather, shared by the fault schedule (writer) and its planner (reader).
#[derive(Clone, Debug, Default)]
pub struct SharedWeather(Arc<Mutex<Weather>>);

impl SharedWeather {
    pub fn get(&self) -> Weather {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, weather: Weather) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = weather;
    }

    /// One call's delay before sending, time in flight, and failure.
    fn draw(&self, rng: &Mutex<SimRng>) -> FailurePlan {
        let weather = self.get();
        if weather.down {
            return FailurePlan {
                failure: Failure::Unreachable,
                ..FailurePlan::default()
            };
        }
        let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut delay_ms = 0;
        let mut in_flight_ms = 0;
        if weather.delay_ms_max > 0 {
            delay_ms += rng.between(0, weather.delay_ms_max);
        }
        if weather.slow_per_million > 0 && rng.chance(weather.slow_per_million) {
            // Slow to get a connection (the caller may give up first), or slow once
            // received (the database finishes it regardless).
            let slow_ms = rng.between(0, weather.slow_ms_max);
            if rng.chance(500_000) {
                delay_ms += slow_ms;
            } else {
                in_flight_ms += slow_ms;
            }
        }
        let failure = if weather.fail_per_million > 0 && rng.chance(weather.fail_per_million) {
            if rng.chance(500_000) {
                Failure::Unreachable
            } else {
                Failure::LostReply
            }
        } else {
            Failure::None
        };
        FailurePlan {
            delay: Duration::from_millis(delay_ms),
            in_flight: Duration::from_millis(in_flight_ms),
            failure,
        }
    }

    /// A planner for one store's calls (a reservation book's or the coordinator's
    /// transfer log's), drawing from the stream `seed`.
    pub fn planner<C>(&self, seed: u64) -> FailurePlanner<C> {
        let weather = self.clone();
        let rng = Mutex::new(SimRng::new(seed));
        Arc::new(move |_call: C| weather.draw(&rng))
    }
}
