//! The simulated databases' weather: how slow and how unreliable each store is right now.
//! The fault schedule changes it between steps; each store's call planner draws every
//! call's fate from it with a seeded stream of its own, in the (deterministic) order the
//! calls arrive.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coordinator::store::memory as coordinator_db;
use participant::memory as book_db;

use crate::rng::SimRng;

/// One store's weather. The default is calm: no delay, no failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weather {
    /// Every call waits up to this long (uniform).
    pub delay_max_ms: u64,
    /// Calls that are slow on top of that, per million, and how slow: half of them
    /// waiting for a connection, half in flight in the database.
    pub slow_per_million: u64,
    pub slow_max_ms: u64,
    /// Calls that fail, per million; half before applying, half after (reply lost).
    pub fail_per_million: u64,
    /// The database is down: every call fails before applying.
    pub down: bool,
}

/// What the planner decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Ok,
    Unreachable,
    LostReply,
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

    /// (delay before sending, time in flight, fate) of one call.
    fn draw(&self, rng: &Mutex<SimRng>) -> (Duration, Duration, Fate) {
        let weather = self.get();
        if weather.down {
            return (Duration::ZERO, Duration::ZERO, Fate::Unreachable);
        }
        let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut delay_ms = 0;
        let mut in_flight_ms = 0;
        if weather.delay_max_ms > 0 {
            delay_ms += rng.between(0, weather.delay_max_ms);
        }
        if weather.slow_per_million > 0 && rng.chance(weather.slow_per_million) {
            // Slow to get a connection (the caller may give up first), or slow once
            // received (the database finishes it regardless).
            let slow_ms = rng.between(0, weather.slow_max_ms);
            if rng.chance(500_000) {
                delay_ms += slow_ms;
            } else {
                in_flight_ms += slow_ms;
            }
        }
        let fate = if weather.fail_per_million > 0 && rng.chance(weather.fail_per_million) {
            if rng.chance(500_000) {
                Fate::Unreachable
            } else {
                Fate::LostReply
            }
        } else {
            Fate::Ok
        };
        (
            Duration::from_millis(delay_ms),
            Duration::from_millis(in_flight_ms),
            fate,
        )
    }

    /// A planner for a reservation book, drawing from the stream `seed`.
    pub fn book_planner(&self, seed: u64) -> book_db::CallPlanner {
        let weather = self.clone();
        let rng = Mutex::new(SimRng::new(seed));
        Arc::new(move |_call| {
            let (delay, in_flight, fate) = weather.draw(&rng);
            book_db::CallPlan {
                delay,
                in_flight,
                failure: match fate {
                    Fate::Ok => book_db::CallFailure::None,
                    Fate::Unreachable => book_db::CallFailure::Unreachable,
                    Fate::LostReply => book_db::CallFailure::LostReply,
                },
            }
        })
    }

    /// A planner for the coordinator's transfer store, drawing from the stream `seed`.
    pub fn coordinator_planner(&self, seed: u64) -> coordinator_db::CallPlanner {
        let weather = self.clone();
        let rng = Mutex::new(SimRng::new(seed));
        Arc::new(move |_call| {
            let (delay, in_flight, fate) = weather.draw(&rng);
            coordinator_db::CallPlan {
                delay,
                in_flight,
                failure: match fate {
                    Fate::Ok => coordinator_db::CallFailure::None,
                    Fate::Unreachable => coordinator_db::CallFailure::Unreachable,
                    Fate::LostReply => coordinator_db::CallFailure::LostReply,
                },
            }
        })
    }
}
