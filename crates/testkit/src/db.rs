//! Throw-away databases for tests: a SQLite file in a temporary directory, and a uniquely
//! named PostgreSQL database that is dropped afterwards.
//!
//! PostgreSQL is found at `BANKTRANSFER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Where no server answers, Postgres tests
//! skip with a loud message, unless `REQUIRE_POSTGRES=1` (CI sets it), which makes the
//! absence a test failure.

use std::sync::atomic::{AtomicU32, Ordering};

use service_kit::clock::{Clock, SystemClock};
use service_kit::db::Backend;
use sqlx::{Connection, Executor};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("url", &self.url)
            .finish()
    }
}

pub fn sqlite(name: &str) -> TestDatabase {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}",
        dir.path().join(format!("{name}.db")).display()
    );
    TestDatabase {
        url,
        backend: Backend::Sqlite,
        postgres: None,
        _dir: Some(dir),
    }
}

fn admin_url() -> String {
    std::env::var("BANKTRANSFER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A fresh PostgreSQL database, or `None` (with a loud message) where no server is
/// reachable and `REQUIRE_POSTGRES` is not `1`.
pub async fn postgres(name: &str) -> Option<TestDatabase> {
    postgres_at(&admin_url(), name).await
}

/// As [`postgres`], on the server that `admin` (a URL of its `postgres` database) names:
/// the load generator's chaos mode points it at a private server it started itself.
pub async fn postgres_at(admin: &str, name: &str) -> Option<TestDatabase> {
    sqlx::any::install_default_drivers();
    let admin = admin.to_owned();
    let mut conn = match sqlx::AnyConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(err) => {
            assert!(
                !postgres_required(),
                "REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {admin}: {err}"
            );
            eprintln!(
                "\n!!!!!!!!!! SKIPPING POSTGRES TEST {name}: no server at {admin} ({err}). \
                 Set REQUIRE_POSTGRES=1 to make this a failure. !!!!!!!!!!\n"
            );
            return None;
        }
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let db_name = format!(
        "bt_test_{}_{}_{}_{}",
        name.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        SystemClock.now_ms() % 1_000_000
    );
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db_name}\""
    )))
    .await
    .expect("create test database");
    let _ = conn.close().await;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Some(TestDatabase {
        url: format!("{base}/{db_name}"),
        backend: Backend::Postgres,
        postgres: Some((admin.clone(), db_name)),
        _dir: None,
    })
}

/// Every back end available here: SQLite always, PostgreSQL when reachable.
pub async fn all(name: &str) -> Vec<TestDatabase> {
    let mut dbs = vec![sqlite(name)];
    dbs.extend(postgres(name).await);
    dbs
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, db_name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                        )))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Fails unless PostgreSQL plans `statement`, run with its one `parameter` on `conn` (a
/// transaction with the settings under test), without reading any table whole.
pub async fn assert_no_seq_scan(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    statement: &str,
    parameter: &str,
) {
    let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN {statement}")))
        .bind(parameter)
        .fetch_all(&mut *conn)
        .await
        .expect(name);
    let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
    assert!(
        !plan.iter().any(|line| line.contains("Seq Scan")),
        "{name} scans a table whole:\n{}",
        plan.join("\n")
    );
}
