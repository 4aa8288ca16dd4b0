//! Group commit: the writes of many concurrent callers in one database transaction, so
//! that one commit (one WAL flush, one fsync) makes them all durable at once.
//!
//! Why: SQLite with `synchronous = FULL` flushes its WAL on every commit (about 1 ms on
//! this kind of disk), and a transfer commits seven times across three databases, so one
//! transaction per write caps a file at about a thousand commits a second however idle
//! the processors are. PostgreSQL already merges concurrent flushes, but every
//! transaction still costs it a BEGIN and a COMMIT round trip.
//!
//! How: callers [`GroupCommit::submit`] a [`Job`] into a bounded queue; each worker takes
//! what is waiting (up to `batch_max`), runs the jobs one after another on one connection
//! inside one transaction, commits, and only then answers each caller: nothing is
//! reported before it is durable. The jobs run sequentially, so each sees the writes of
//! those before it exactly as if they had committed one by one (idempotency checks,
//! tombstones and guards behave the same). A job that fails rolls the whole batch back,
//! and every job of that batch then runs alone ([`Job::run_alone`], the same code in a
//! transaction of its own), so one bad job cannot fail its neighbours. A commit that
//! fails leaves every job's outcome unknown, which is what its caller is told.
//!
//! Two workers on PostgreSQL, one batch committing at a time under load: a worker with
//! a new batch waits for the batch in flight, gathering what arrives meanwhile, unless
//! load is light (the recent batches held about one write each). Then the two overlap,
//! so that a lone write does not queue behind another lone write's commit, which was
//! most of the tail at light load ([`GroupCommitSettings::light_batch_milli`]). Two batches
//! in flight are two transactions side by side, as two replicas of a service would run
//! them: the jobs' row locks and unique keys keep their outcomes those of one after the
//! other. SQLite has one connection per process: one worker there.
//!
//! A job type runs its whole batch at once ([`Job::run_many`]), so it may use a few
//! multi-row statements instead of a few statements per job, as long as every job's
//! outcome and writes are what running them one after another would give; the
//! reservation book and the transfer log do, since on PostgreSQL each statement is a
//! round trip to another process.
//!
//! Bounds: the queue holds `queue_max` jobs (beyond it, [`Job::unavailable`] at once),
//! a batch holds `batch_max`. Each batch's size is a metric
//! (`banktransfer_group_commit_batch_writes`): a store's cost per write follows it.
//!
//! The connection: on PostgreSQL a worker keeps its connection from one batch to the
//! next. Taking one from the pool and giving it back costs two round trips (sqlx pings
//! a connection when it is taken and again when it is returned), which at low load, where
//! most batches hold one write, was two of a batch's five to nine. A batch that fails
//! in any way gives the connection back (the pool's test then drops it if it is broken),
//! and so does one idle for [`HELD_IDLE_MAX`] (a connection can die quietly while idle;
//! the pool's test finds out at once, a statement only after the network gives up) or
//! held for [`HELD_AGE_MAX`] (so that the pool's own lifetime rule still renews it, after
//! a fail-over for instance). On SQLite the process has one connection, which reads need
//! too: it is taken per batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::AnyConnection;
use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::db::{Backend, Db};

/// How a batch's transaction begins on PostgreSQL, in one round trip:
/// - `lock_timeout`: jobs of two batches on different connections may lock the same rows
///   in opposite orders. A batch that waits this long on a lock gives up and its jobs run
///   alone (in the one lock order every operation follows), instead of waiting a second
///   for the deadlock detector.
/// - no sequential scans or hash and merge joins: a batch's statements look a few rows up
///   by key. On a young table the planner prefers to read the table whole, and the
///   prepared statement's cached plan keeps that choice while the table grows (until the
///   next ANALYZE): every batch then reads every row. The settings only make other paths
///   cost more, so a statement without an index to use still runs.
pub const POSTGRES_BATCH_BEGIN: &str = "BEGIN; SET LOCAL lock_timeout = '50ms'; \
     SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
     SET LOCAL enable_mergejoin = off";

/// [`POSTGRES_BATCH_BEGIN`] for a batch of writes that need no flush ([`Job::must_flush`]):
/// its commit returns without waiting for the WAL to reach the disk.
pub const POSTGRES_LAZY_BATCH_BEGIN: &str = "BEGIN; SET LOCAL lock_timeout = '50ms'; \
     SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
     SET LOCAL enable_mergejoin = off; SET LOCAL synchronous_commit = off";

/// A worker's connection left idle this long goes back to the pool before the next batch,
/// which then takes one the pool has tested (module docs).
pub const HELD_IDLE_MAX: Duration = Duration::from_secs(5);

/// A worker's connection held this long goes back to the pool too (module docs).
pub const HELD_AGE_MAX: Duration = Duration::from_secs(600);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One caller's write.
pub trait Job: Send + Sync + 'static {
    type Output: Send + 'static;
    type Error: Send + 'static;

    /// Runs a whole batch inside its shared transaction, in order, and returns one output
    /// per job: the outcomes and the writes must be exactly those of running the jobs
    /// one after another, each seeing the writes of those before it (a job type may use
    /// multi-row reads and writes to do so with fewer statements). Must not begin,
    /// commit or roll back, and must leave the connection usable unless it fails. An
    /// error rolls the batch back and every job then runs alone.
    fn run_many<'c>(
        jobs: &'c [&'c Self],
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Vec<Self::Output>, Self::Error>>
    where
        Self: Sized;

    /// Runs in a transaction of its own on `conn`, which is in no transaction: begins,
    /// writes and commits, or writes with one statement, which is a transaction of its
    /// own (after its batch failed, or when it is alone). Durable once it returns,
    /// unless [`Job::must_flush`] says otherwise.
    fn run_alone<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<Self::Output, Self::Error>>;

    /// Whether the caller may hear of this write only once it is on disk: true unless
    /// the write restates what is durable elsewhere, so that losing it in a crash of the
    /// database changes no answer and recovery writes it again. On PostgreSQL a batch
    /// whose every job says false commits without waiting for the WAL flush
    /// ([`POSTGRES_LAZY_BATCH_BEGIN`]); a job alone that says false must do the same in
    /// its `run_alone` (one statement can, with `set_config('synchronous_commit', 'off',
    /// true)`). The WAL is flushed in order, so such a commit is on disk with the next
    /// flushed commit of the server, or within its WAL writer's delay. SQLite flushes
    /// every commit (`synchronous` is a connection's setting, not a transaction's).
    fn must_flush(&self) -> bool {
        true
    }

    /// What the caller is told when its outcome is unknown: the batch could not begin
    /// or commit, the queue is full, or the worker is gone.
    fn unavailable(detail: String) -> Self::Error;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// Transactions in progress at once at most, each on its own connection, and never
    /// all of the pool's. SQLite has one connection per process: one there, whatever
    /// this says.
    pub workers: usize,
    /// Load is light while the recent mean batch (an exponentially weighted mean,
    /// [`Flight`]) holds at most this many thousandths of a job: 1,300 is 1.3. Only
    /// then does a batch start while another is committing. Otherwise it waits for the
    /// one in flight, gathering what arrives meanwhile, so that under load one batch
    /// commits at a time and each carries everything that came during the last.
    pub light_batch_milli: usize,
    /// Jobs per transaction.
    pub batch_max: usize,
    /// Jobs waiting at most; beyond it callers are refused at once.
    pub queue_max: usize,
}

impl Default for GroupCommitSettings {
    /// Two workers that overlap only under light load. Free overlap costs throughput:
    /// more transactions mean smaller batches, and a batch's cost is mostly its round
    /// trips whatever its size (at 400 transfers/s offered, in the first sitting, one
    /// worker per store carried 396/s at 3.8 ms of CPU per transfer, two 314/s at 4.9 ms;
    /// at 1,000/s in the tenth, two free workers took the p99 from 34-37 to 63 ms, and
    /// overlapping up to a mean batch of 2 raised the p99 at 500/s from about 25 to 39
    /// ms). But with one worker, a write that arrives while a lone write commits waits
    /// for that commit first, which is most of the tail at light load: overlapping there
    /// took PostgreSQL's p99 at 200/s from 12.4 and 15.4 to 8.5 and 9.3 ms in alternated
    /// 20 s runs (docs/PERFORMANCE.md, "A tenth sitting"). The pool's other connections
    /// serve reads.
    fn default() -> GroupCommitSettings {
        GroupCommitSettings {
            workers: 2,
            light_batch_milli: 1_300,
            batch_max: 64,
            queue_max: 4096,
        }
    }
}

/// The batches being run, and how large batches have been lately, which a worker with a
/// new batch consults before it starts ([`GroupCommitSettings::light_batch_milli`]).
#[derive(Debug, Default)]
struct Flight {
    /// Jobs in the batches being run.
    jobs: AtomicUsize,
    /// The recent mean batch size, in thousandths (an exponentially weighted mean).
    recent_batch_milli: AtomicUsize,
    landed: Notify,
}

impl Flight {
    /// Returns once this batch may start: nothing is in flight, or load is light (the
    /// recent mean batch holds at most `light_batch_milli` thousandths of a job).
    async fn clear(&self, light_batch_milli: usize) {
        loop {
            // Registered before the check, so a batch landing in between still wakes it.
            let landed = self.landed.notified();
            if self.jobs.load(Ordering::SeqCst) == 0
                || self.recent_batch_milli.load(Ordering::Relaxed) <= light_batch_milli
            {
                return;
            }
            landed.await;
        }
    }

    /// Counts `jobs` in flight until the returned guard is dropped.
    fn take_off(&self, jobs: usize) -> InFlight<'_> {
        self.jobs.fetch_add(jobs, Ordering::SeqCst);
        // mean += (batch - mean) / 8; one writer at a time (the queue's lock).
        let mean = self.recent_batch_milli.load(Ordering::Relaxed);
        let next = (mean * 7 + jobs * 1000) / 8;
        self.recent_batch_milli.store(next, Ordering::Relaxed);
        InFlight { flight: self, jobs }
    }
}

/// A batch in flight; dropping it (after the batch is answered, or if its worker
/// panics) lands it.
struct InFlight<'a> {
    flight: &'a Flight,
    jobs: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.flight.jobs.fetch_sub(self.jobs, Ordering::SeqCst);
        self.flight.landed.notify_waiters();
    }
}

struct Queued<J: Job> {
    job: J,
    reply: oneshot::Sender<Result<J::Output, J::Error>>,
}

/// The queue in front of the workers. Cheap to clone; the workers stop once every clone
/// is dropped and the queue is drained.
pub struct GroupCommit<J: Job> {
    queue: mpsc::Sender<Queued<J>>,
}

impl<J: Job> Clone for GroupCommit<J> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
        }
    }
}

impl<J: Job> std::fmt::Debug for GroupCommit<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish()
    }
}

impl<J: Job> GroupCommit<J> {
    /// Starts the workers on the current Tokio runtime.
    pub fn start(db: Db, settings: GroupCommitSettings) -> GroupCommit<J> {
        assert!(settings.workers >= 1, "group commit needs a worker");
        assert!(settings.batch_max >= 1, "a batch holds at least one job");
        let (queue, receiver) = mpsc::channel(settings.queue_max.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let flight = Arc::new(Flight::default());
        // Each PostgreSQL worker holds a connection between batches: one is left for reads.
        let connections_max =
            usize::try_from(db.pool.options().get_max_connections()).unwrap_or(usize::MAX);
        let workers = match db.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => settings
                .workers
                .min(connections_max.saturating_sub(1))
                .max(1),
        };
        for _ in 0..workers {
            tokio::spawn(work(
                db.clone(),
                Arc::clone(&receiver),
                Arc::clone(&flight),
                settings,
            ));
        }
        GroupCommit { queue }
    }

    /// Runs `job` in the next batch and answers once that batch is committed. The job
    /// runs even if the caller stops waiting (a write is never abandoned half-way).
    pub async fn submit(&self, job: J) -> Result<J::Output, J::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Queued { job, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    J::unavailable("the database's write queue is full; retry shortly".to_owned())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    J::unavailable("the database writer has stopped".to_owned())
                }
            })?;
        answer.await.unwrap_or_else(|_| {
            Err(J::unavailable(
                "the database writer stopped before answering".to_owned(),
            ))
        })
    }
}

async fn work<J: Job>(
    db: Db,
    receiver: Arc<Mutex<mpsc::Receiver<Queued<J>>>>,
    flight: Arc<Flight>,
    settings: GroupCommitSettings,
) {
    let batch_max = settings.batch_max;
    let mut batch = Vec::with_capacity(batch_max);
    // On PostgreSQL each worker opens its connection now rather than on its first batch:
    // with two workers taking turns, the second write a store ever makes (a transfer's
    // decision, say) would otherwise wait for a connection to be opened (a TLS handshake)
    // inside the client's budget. If the database cannot be reached yet, the first batch
    // tries again.
    let mut held = match db.backend {
        Backend::Postgres => db
            .pool
            .acquire()
            .await
            .ok()
            .map(|conn| Held::idle(conn, Instant::now())),
        Backend::Sqlite => None,
    };
    loop {
        // One worker at a time takes what is waiting; the others wait for the lock.
        let mut queue = receiver.lock().await;
        if queue.recv_many(&mut batch, batch_max).await == 0 {
            return;
        }
        flight.clear(settings.light_batch_milli).await;
        // What came while the batches in flight landed rides along.
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let _in_flight = flight.take_off(batch.len());
        drop(queue);
        crate::metrics::record_group_commit_batch(batch.len());
        let (mut conn, taken_at) = match held.take().filter(|h| h.reusable(Instant::now())) {
            Some(held) => (held.conn, held.taken_at),
            None => match db.pool.acquire().await {
                Ok(conn) => (conn, Instant::now()),
                Err(err) => {
                    answer_unavailable(&mut batch, &format!("cannot reach the database: {err}"));
                    continue;
                }
            },
        };
        let clean = run_batch(db.backend, &mut conn, &mut batch).await;
        batch.clear();
        // Dropping the connection gives it back to the pool.
        if clean && db.backend == Backend::Postgres {
            held = Some(Held::idle(conn, taken_at));
        }
    }
}

/// The connection a PostgreSQL worker keeps between batches.
struct Held {
    conn: PoolConnection<sqlx::Any>,
    /// When the worker took it from the pool.
    taken_at: Instant,
    /// When its last batch ended.
    idle_since: Instant,
}

impl Held {
    /// `conn`, taken from the pool at `taken_at`, idle from now on.
    fn idle(conn: PoolConnection<sqlx::Any>, taken_at: Instant) -> Held {
        Held {
            conn,
            taken_at,
            idle_since: Instant::now(),
        }
    }

    fn reusable(&self, now: Instant) -> bool {
        keep_connection(
            now.saturating_duration_since(self.idle_since),
            now.saturating_duration_since(self.taken_at),
        )
    }
}

/// Whether a worker keeps using its connection, given how long it has been idle and how
/// long it has been held.
fn keep_connection(idle: Duration, age: Duration) -> bool {
    idle < HELD_IDLE_MAX && age < HELD_AGE_MAX
}

/// Runs and answers every job of `batch`; true when nothing failed (the connection is
/// then known to be usable).
async fn run_batch<J: Job>(
    backend: Backend,
    conn: &mut AnyConnection,
    batch: &mut Vec<Queued<J>>,
) -> bool {
    if batch.len() > 1 {
        match run_together(backend, conn, batch).await {
            Together::Committed(outputs) => {
                for (queued, output) in batch.drain(..).zip(outputs) {
                    // A caller that stopped waiting is no longer interested.
                    let _ = queued.reply.send(Ok(output));
                }
                return true;
            }
            Together::Unknown(detail) => {
                answer_unavailable(batch, &detail);
                return false;
            }
            // Rolled back: each job runs alone below.
            Together::JobFailed => {
                tracing::debug!(
                    jobs = batch.len(),
                    "a batched write failed: running each alone"
                );
            }
        }
    }
    let mut clean = true;
    for queued in batch.drain(..) {
        let result = queued.job.run_alone(&mut *conn).await;
        clean &= result.is_ok();
        let _ = queued.reply.send(result);
    }
    clean
}

/// Tells every caller of `batch` that its outcome is unknown.
fn answer_unavailable<J: Job>(batch: &mut Vec<Queued<J>>, detail: &str) {
    for queued in batch.drain(..) {
        let _ = queued.reply.send(Err(J::unavailable(detail.to_owned())));
    }
}

enum Together<T> {
    Committed(Vec<T>),
    /// A job failed; the transaction was rolled back and nothing of the batch is written.
    JobFailed,
    /// Could not begin, or the commit failed: what is written is unknown.
    Unknown(String),
}

async fn run_together<J: Job>(
    backend: Backend,
    conn: &mut AnyConnection,
    batch: &[Queued<J>],
) -> Together<J::Output> {
    use sqlx::Connection;
    let lazy = batch.iter().all(|queued| !queued.job.must_flush());
    let begun = match backend {
        Backend::Postgres if lazy => conn.begin_with(POSTGRES_LAZY_BATCH_BEGIN).await,
        Backend::Postgres => conn.begin_with(POSTGRES_BATCH_BEGIN).await,
        Backend::Sqlite => conn.begin().await,
    };
    let mut tx = match begun {
        Ok(tx) => tx,
        Err(err) => return Together::Unknown(format!("cannot begin a transaction: {err}")),
    };
    let jobs: Vec<&J> = batch.iter().map(|queued| &queued.job).collect();
    let outputs = match J::run_many(&jobs, &mut tx).await {
        Ok(outputs) => outputs,
        Err(_) => {
            // Dropping the transaction rolls it back; log why only at debug: the job
            // reports its own error when it runs alone.
            if let Err(err) = tx.rollback().await {
                tracing::warn!(error = %err, "rolling back a failed batch failed");
            }
            return Together::JobFailed;
        }
    };
    assert_eq!(
        outputs.len(),
        batch.len(),
        "a batch answers every one of its jobs"
    );
    match tx.commit().await {
        Ok(()) => Together::Committed(outputs),
        Err(err) => Together::Unknown(format!("the commit failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, PoolSettings};

    /// Appends a row numbered by how many rows it saw: run one after another (alone or
    /// in a batch), the numbers are exactly 0..n. `fail` makes the job fail in a batch
    /// and succeed alone, like a unique violation that a re-read resolves.
    struct Append {
        label: String,
        fail_in_batch: bool,
        /// Runs inside a shared transaction, counted.
        batched: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Append {
        fn new(label: impl Into<String>) -> Append {
            Append {
                label: label.into(),
                fail_in_batch: false,
                batched: Arc::default(),
            }
        }
    }

    impl Append {
        async fn append(&self, conn: &mut AnyConnection) -> Result<i64, String> {
            let (seen,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM log")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query("INSERT INTO log (label, seen) VALUES ($1, $2)")
                .bind(self.label.as_str())
                .bind(seen)
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(seen)
        }
    }

    impl Job for Append {
        type Output = i64;
        type Error = String;

        fn run_many<'c>(
            jobs: &'c [&'c Self],
            conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<Vec<i64>, String>> {
            Box::pin(async move {
                let mut outputs = Vec::with_capacity(jobs.len());
                for job in jobs {
                    job.batched
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    outputs.push(job.append(&mut *conn).await?);
                    if job.fail_in_batch {
                        return Err(format!("{} fails in a batch", job.label));
                    }
                }
                Ok(outputs)
            })
        }

        fn run_alone<'c>(
            &'c self,
            conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<i64, String>> {
            Box::pin(async move {
                use sqlx::Connection;
                let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
                let seen = self.append(&mut tx).await?;
                tx.commit().await.map_err(|e| e.to_string())?;
                Ok(seen)
            })
        }

        fn unavailable(detail: String) -> String {
            format!("unavailable: {detail}")
        }
    }

    async fn log_db(dir: &tempfile::TempDir) -> Db {
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = db::connect(&url, PoolSettings::default()).await.unwrap();
        sqlx::query("CREATE TABLE log (label TEXT PRIMARY KEY, seen BIGINT NOT NULL)")
            .execute(&db.pool)
            .await
            .unwrap();
        db
    }

    fn settings(batch_max: usize, queue_max: usize) -> GroupCommitSettings {
        GroupCommitSettings {
            workers: 1,
            light_batch_milli: 1_300,
            batch_max,
            queue_max,
        }
    }

    /// Polls `future` once: whether it is ready now, without waiting.
    fn ready_now<F: Future>(future: Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx).is_ready()
    }

    /// A flight whose recent batches held `jobs` each.
    fn flight_after(batches: usize, jobs: usize) -> Flight {
        let flight = Flight::default();
        for _ in 0..batches {
            drop(flight.take_off(jobs));
        }
        flight
    }

    #[test]
    fn a_batch_starts_at_once_when_nothing_is_in_flight() {
        let flight = flight_after(30, 20);
        assert!(ready_now(std::pin::pin!(flight.clear(1_300))));
    }

    #[test]
    fn under_heavy_load_a_batch_waits_for_the_one_in_flight() {
        let flight = flight_after(30, 20);
        let in_flight = flight.take_off(20);
        let mut clear = std::pin::pin!(flight.clear(1_300));
        assert!(
            !ready_now(clear.as_mut()),
            "a second transaction would split the load"
        );
        drop(in_flight);
        assert!(ready_now(clear.as_mut()), "the landing wakes it");
    }

    #[test]
    fn under_light_load_lone_writes_overlap() {
        let flight = flight_after(30, 1);
        let _in_flight = flight.take_off(1);
        assert!(ready_now(std::pin::pin!(flight.clear(1_300))));
    }

    #[test]
    fn the_recent_mean_batch_follows_the_load() {
        let flight = flight_after(30, 20);
        let mean = |flight: &Flight| flight.recent_batch_milli.load(Ordering::Relaxed);
        assert!(mean(&flight) > 19_000, "{}", mean(&flight));
        for _ in 0..40 {
            drop(flight.take_off(1));
        }
        assert!(mean(&flight) < 1_300, "light again: {}", mean(&flight));
        assert_eq!(flight.jobs.load(Ordering::SeqCst), 0, "every batch landed");
    }

    /// Waits (bounded: a test that cannot reach its state fails instead of hanging CI).
    async fn until(reached: impl Fn() -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !reached() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached: {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    async fn labels_and_seen(db: &Db) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT label, seen FROM log ORDER BY seen")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_run_one_after_another_and_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = log_db(&dir).await;
        let writes = GroupCommit::start(db.clone(), settings(8, 100));
        let calls = (0..50).map(|i| {
            let writes = writes.clone();
            tokio::spawn(async move { writes.submit(Append::new(format!("job-{i}"))).await })
        });
        let mut seen: Vec<i64> = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            seen.push(call.await.unwrap().unwrap());
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..50).collect::<Vec<i64>>(),
            "each saw all before it"
        );
        let rows = labels_and_seen(&db).await;
        assert_eq!(rows.len(), 50, "every answered job is committed");
    }

    #[tokio::test]
    async fn a_failing_job_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = log_db(&dir).await;
        let batched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // The batch is built by hand and given to the worker's own batch runner: which
        // jobs meet in one batch must not depend on how the scheduler interleaves them.
        let mut answers = Vec::new();
        let mut batch: Vec<Queued<Append>> = (0..20)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                let job = Append {
                    label: format!("job-{i}"),
                    fail_in_batch: i == 7,
                    batched: Arc::clone(&batched),
                };
                Queued { job, reply }
            })
            .collect();
        let mut conn = db.pool.acquire().await.unwrap();
        let clean = run_batch(db.backend, &mut conn, &mut batch).await;
        drop(conn);
        assert!(batch.is_empty(), "every job was answered");
        assert!(clean, "alone, every job succeeded");
        for answer in answers {
            answer
                .await
                .expect("every job is answered")
                .expect("alone, the failing job succeeds too");
        }
        assert_eq!(
            batched.load(std::sync::atomic::Ordering::SeqCst),
            8,
            "jobs 0..=7 ran in the shared transaction before job 7 sent them all alone"
        );
        // Nothing of the rolled-back batch remains: each label exactly once, numbered
        // 0..20 without gaps.
        let rows = labels_and_seen(&db).await;
        let seen: Vec<i64> = rows.iter().map(|(_, seen)| *seen).collect();
        assert_eq!(seen, (0..20).collect::<Vec<i64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = log_db(&dir).await;
        // Hold the only connection so the worker cannot start its batch.
        let held = db.pool.acquire().await.unwrap();
        let writes = GroupCommit::start(db.clone(), settings(1, 2));
        let submit = |i: usize| {
            let writes = writes.clone();
            tokio::spawn(async move { writes.submit(Append::new(format!("job-{i}"))).await })
        };
        // The first job goes in synchronously; the worker takes it, then waits for the
        // connection.
        let (reply, first) = oneshot::channel();
        let job = Append::new("job-0");
        writes.queue.try_send(Queued { job, reply }).ok().unwrap();
        until(
            || writes.queue.capacity() == 2,
            "the worker takes the first job",
        )
        .await;
        let calls = vec![submit(1), submit(2)];
        until(|| writes.queue.capacity() == 0, "two jobs fill the queue").await;
        // One job is with the worker (waiting for the connection), two fill the queue.
        let refused = writes.submit(Append::new("one-too-many")).await;
        assert_eq!(
            refused,
            Err("unavailable: the database's write queue is full; retry shortly".into())
        );
        drop(held);
        first.await.unwrap().unwrap();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(labels_and_seen(&db).await.len(), 3);
    }

    #[test]
    fn a_worker_gives_back_a_connection_idle_or_held_too_long() {
        let second = Duration::from_secs(1);
        assert!(keep_connection(Duration::ZERO, Duration::ZERO));
        assert!(keep_connection(
            HELD_IDLE_MAX - second,
            HELD_AGE_MAX - second
        ));
        assert!(
            !keep_connection(HELD_IDLE_MAX, Duration::ZERO),
            "idle too long"
        );
        assert!(
            !keep_connection(Duration::ZERO, HELD_AGE_MAX),
            "held too long"
        );
    }

    /// Answers the PostgreSQL backend process its batch ran on.
    struct BackendPid;

    impl BackendPid {
        async fn pid(conn: &mut AnyConnection) -> Result<i32, String> {
            let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(pid)
        }
    }

    impl Job for BackendPid {
        type Output = i32;
        type Error = String;

        fn run_many<'c>(
            jobs: &'c [&'c Self],
            conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<Vec<i32>, String>> {
            Box::pin(async move {
                let pid = BackendPid::pid(conn).await?;
                Ok(vec![pid; jobs.len()])
            })
        }

        fn run_alone<'c>(
            &'c self,
            conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<i32, String>> {
            Box::pin(async move {
                use sqlx::Connection;
                let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
                let pid = BackendPid::pid(&mut tx).await?;
                tx.commit().await.map_err(|e| e.to_string())?;
                Ok(pid)
            })
        }

        fn unavailable(detail: String) -> String {
            format!("unavailable: {detail}")
        }
    }

    /// A fresh PostgreSQL database and a pool on it, or `None` where no server runs (the
    /// database is dropped with the guard).
    async fn postgres_db(name: &str) -> Option<(testkit::db::TestDatabase, Db)> {
        let database = testkit::db::postgres(name).await?;
        let db = db::connect(&database.url, PoolSettings::default())
            .await
            .unwrap();
        Some((database, db))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_workers_open_their_connections_before_the_first_write() {
        let Some((_database, db)) = postgres_db("group_commit_eager").await else {
            return;
        };
        let writes = GroupCommit::start(db.clone(), GroupCommitSettings::default());
        until(
            || db.pool.size() == 2 && db.pool.num_idle() == 0,
            "each of the two workers holds a connection",
        )
        .await;
        let mut pids = std::collections::HashSet::new();
        for _ in 0..6 {
            pids.insert(writes.submit(BackendPid).await.unwrap());
        }
        assert_eq!(
            db.pool.size(),
            2,
            "no write opened a connection on its way: {pids:?}"
        );
        assert!(pids.len() <= 2, "{pids:?}");
    }

    /// Answers the `synchronous_commit` its batch ran under; alone, "alone", once `gate`
    /// lets it (so that what is submitted meanwhile makes one batch).
    struct SyncSetting {
        must_flush: bool,
        gate: Option<(Arc<Notify>, Arc<tokio::sync::Semaphore>)>,
    }

    impl Job for SyncSetting {
        type Output = String;
        type Error = String;

        fn run_many<'c>(
            jobs: &'c [&'c Self],
            conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<Vec<String>, String>> {
            Box::pin(async move {
                let (setting,): (String,) =
                    sqlx::query_as("SELECT current_setting('synchronous_commit')")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| e.to_string())?;
                Ok(vec![setting; jobs.len()])
            })
        }

        fn run_alone<'c>(
            &'c self,
            _conn: &'c mut AnyConnection,
        ) -> BoxFuture<'c, Result<String, String>> {
            Box::pin(async move {
                if let Some((started, gate)) = &self.gate {
                    started.notify_one();
                    let _open = gate.acquire().await.map_err(|e| e.to_string())?;
                }
                Ok("alone".to_owned())
            })
        }

        fn must_flush(&self) -> bool {
            self.must_flush
        }

        fn unavailable(detail: String) -> String {
            format!("unavailable: {detail}")
        }
    }

    /// Submits `must_flush` as one batch (behind a lone job held at a gate) and answers
    /// the batch's setting.
    async fn batch_setting(writes: &GroupCommit<SyncSetting>, must_flush: &[bool]) -> Vec<String> {
        let started = Arc::new(Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let lone = {
            let writes = writes.clone();
            let gate = Some((started.clone(), gate.clone()));
            tokio::spawn(async move {
                writes
                    .submit(SyncSetting {
                        must_flush: false,
                        gate,
                    })
                    .await
            })
        };
        started.notified().await;
        let batch: Vec<_> = must_flush
            .iter()
            .map(|&must_flush| {
                let writes = writes.clone();
                tokio::spawn(async move {
                    writes
                        .submit(SyncSetting {
                            must_flush,
                            gate: None,
                        })
                        .await
                })
            })
            .collect();
        let queue = &writes.queue;
        until(
            || queue.max_capacity() - queue.capacity() == must_flush.len(),
            "the batch's jobs are queued behind the lone one",
        )
        .await;
        gate.add_permits(1);
        assert_eq!(lone.await.unwrap().unwrap(), "alone");
        let mut settings = Vec::new();
        for job in batch {
            settings.push(job.await.unwrap().unwrap());
        }
        settings
    }

    /// A batch of writes that need no flush commits without waiting for one; a single
    /// write that needs it makes the whole batch wait.
    #[tokio::test]
    async fn a_postgres_batch_waits_for_the_flush_unless_no_job_needs_it() {
        let Some((_database, db)) = postgres_db("group_commit_lazy").await else {
            return;
        };
        let writes = GroupCommit::start(db.clone(), settings(8, 100));
        assert_eq!(
            batch_setting(&writes, &[false, false, false]).await,
            ["off"; 3]
        );
        assert_eq!(
            batch_setting(&writes, &[false, true, false]).await,
            ["on"; 3]
        );
        assert_eq!(batch_setting(&writes, &[true, true]).await, ["on"; 2]);
    }

    /// On PostgreSQL the worker keeps its connection between batches (no pool round trips),
    /// and a connection the server dropped costs one batch, not every batch after it.
    #[tokio::test]
    async fn a_postgres_worker_keeps_its_connection_until_it_fails() {
        let Some((_database, db)) = postgres_db("group_commit_held").await else {
            return;
        };
        let writes = GroupCommit::start(db.clone(), settings(8, 100));

        let first = writes.submit(BackendPid).await.unwrap();
        for _ in 0..5 {
            assert_eq!(writes.submit(BackendPid).await.unwrap(), first);
        }
        // Time enough for a connection given back to reach the pool's idle queue.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            (db.pool.size(), db.pool.num_idle()),
            (1, 0),
            "the worker holds the pool's one connection between batches"
        );

        // The server drops it (a restart, an administrator, a network fault).
        let (terminated,): (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(terminated);
        let failed = writes.submit(BackendPid).await;
        assert!(
            failed.is_err(),
            "the batch on the dropped connection fails: {failed:?}"
        );
        let next = writes.submit(BackendPid).await.unwrap();
        assert_ne!(next, first, "the next batch runs on a new connection");
        assert_eq!(writes.submit(BackendPid).await.unwrap(), next);
    }
}
