//! What both in-memory stores ([`crate::memory_transfer_store`], [`crate::memory_book`])
//! share: the machinery of a simulated database, apart from what its tables hold.
//!
//! - [`SimDatabase`]: the tables under one lock (held from a statement's guard to its
//!   write, it stands for one SQL statement or transaction), a count of the changes
//!   applied, and the store's TEST-ONLY mutation switch (a deliberate bug, set before the
//!   store is shared, so that the simulation can show it notices).
//! - Store failures: before each call, a [`FailurePlanner`] (the simulation's seeded
//!   weather) gives a [`FailurePlan`]: delay the call (a caller that stops waiting then
//!   never sends it), keep it in flight (a statement the database has received completes
//!   even after its caller stops waiting, as on a real server), fail it as an unreachable
//!   database does ([`Failure::Unreachable`]), or apply it and then fail
//!   ([`Failure::LostReply`]). [`StoreFailures`] holds a handle's planner and
//!   [`run_planned`] runs one call as planned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the simulated database does to one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailurePlan {
    /// Waited before the statement is sent (a connection from the pool): a caller that
    /// stops waiting meanwhile never sends it.
    pub delay: Duration,
    /// Then the statement runs this long (a lock wait, a slow disk) and is applied even
    /// if its caller stopped waiting.
    pub in_flight: Duration,
    pub failure: Failure,
}

/// How one call fails, if it does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Failure {
    #[default]
    None,
    /// The database is unreachable: nothing is applied.
    Unreachable,
    /// The statement is committed, then the connection drops before the answer.
    LostReply,
}

/// Plans every call of one store (`C` names the call); the simulation's seeded weather.
pub type FailurePlanner<C> = Arc<dyn Fn(C) -> FailurePlan + Send + Sync>;

/// The failures planned for one store handle: none until a planner is set.
pub struct StoreFailures<C> {
    planner: Option<FailurePlanner<C>>,
}

impl<C> Default for StoreFailures<C> {
    fn default() -> Self {
        StoreFailures { planner: None }
    }
}

impl<C> Clone for StoreFailures<C> {
    fn clone(&self) -> Self {
        StoreFailures {
            planner: self.planner.clone(),
        }
    }
}

impl<C> StoreFailures<C> {
    pub fn planned(planner: FailurePlanner<C>) -> StoreFailures<C> {
        StoreFailures {
            planner: Some(planner),
        }
    }

    /// The plan for one call: asks the planner, once, in the order calls arrive.
    pub fn plan(&self, call: C) -> FailurePlan {
        self.planner
            .as_ref()
            .map(|plan| plan(call))
            .unwrap_or_default()
    }
}

/// One simulated database, shared by every handle on it (clones of a store share it, as
/// connections share a database, so a simulated process that restarts finds it as it
/// was).
pub struct SimDatabase<T, M> {
    tables: Mutex<T>,
    /// Changes applied so far; moves whenever the tables do.
    version: AtomicU64,
    mutation: M,
}

impl<T, M: Copy> SimDatabase<T, M> {
    pub fn new(tables: T, mutation: M) -> SimDatabase<T, M> {
        SimDatabase {
            tables: Mutex::new(tables),
            version: AtomicU64::new(0),
            mutation,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        // Every change is made under the lock after all its checks: a panic cannot leave
        // it half-applied, so a poisoned lock still guards consistent tables.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one applied change.
    pub fn changed(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// How many changes were applied so far: equal versions, equal states.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// TEST-ONLY: the deliberate bug this database runs with.
    pub fn mutation(&self) -> M {
        self.mutation
    }

    /// TEST-ONLY: switches a deliberate bug on, before the database is shared.
    pub fn set_mutation(&mut self, mutation: M) {
        self.mutation = mutation;
    }
}

/// The database behind `shared`, to configure it before any handle is cloned.
pub fn before_sharing<D>(shared: &mut Arc<D>) -> &mut D {
    Arc::get_mut(shared).expect("configure a simulated store before sharing it")
}

/// Runs `statement` on `db` as `plan` says: delayed, in flight, failed before it is
/// applied, or applied with its reply lost. `unreachable` is the error the store's SQL
/// counterpart reports when its pool cannot reach the database.
pub async fn run_planned<D, T, E>(
    db: Arc<D>,
    plan: FailurePlan,
    statement: impl FnOnce(&D) -> Result<T, E> + Send + 'static,
    unreachable: fn() -> E,
) -> Result<T, E>
where
    D: Send + Sync + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if plan.failure == Failure::Unreachable {
        return Err(unreachable());
    }
    let result = if plan.in_flight.is_zero() {
        statement(&db)
    } else {
        // On a task of its own: the database finishes what it received, whether or not
        // the caller still waits (unless the whole process dies).
        let in_flight = plan.in_flight;
        let task = tokio::spawn(async move {
            tokio::time::sleep(in_flight).await;
            statement(&db)
        });
        joined(task.await, unreachable)?
    };
    match result {
        Ok(_) if plan.failure == Failure::LostReply => Err(unreachable()),
        other => other,
    }
}

/// A task's result: a panic in it (a bug, or an assertion on money) is surfaced; a task
/// cancelled because its process is going away answers as an unreachable database.
pub fn joined<T, E>(
    result: Result<T, tokio::task::JoinError>,
    unreachable: fn() -> E,
) -> Result<T, E> {
    match result {
        Ok(value) => Ok(value),
        Err(join_error) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        Err(_) => Err(unreachable()),
    }
}
