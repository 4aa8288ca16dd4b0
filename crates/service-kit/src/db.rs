//! Storage connection: SQLite (the embedded default, a file per service) or PostgreSQL,
//! chosen by the URL's scheme, behind one sqlx `AnyPool`, with embedded migrations per
//! back end (their DDL differs; the queries the services run are the same on both:
//! `$1` placeholders, `ON CONFLICT`, `RETURNING`).
//!
//! SQLite runs with one connection per process (SQLite has one writer anyway, and this
//! turns lock upgrades into queueing instead of SQLITE_BUSY), WAL and synchronous=FULL (a
//! committed write survives power loss), and a busy timeout for other processes sharing
//! the file (the gateway and the reconciler share the coordinator's database).

use std::borrow::Cow;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Executor, SqlStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// PostgreSQL only; SQLite always uses one connection per process.
    pub connections_max: u32,
    /// How long a query waits for a free connection before failing (UNAVAILABLE).
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            connections_max: 10,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// One back end's migrations, in order: (description, SQL).
pub type MigrationList = &'static [(&'static str, &'static str)];

#[derive(Clone, Copy, Debug)]
pub struct Migrations {
    pub sqlite: MigrationList,
    pub postgres: MigrationList,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Opens the pool. For SQLite, creates the file (and its directory) when missing.
pub async fn connect(url: &str, settings: PoolSettings) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).ok_or_else(|| DbError::UnsupportedUrl(url.to_owned()))?;
    let (url, connections_max) = match backend {
        Backend::Sqlite => (sqlite_url(url)?, 1),
        Backend::Postgres => (url.to_owned(), settings.connections_max),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(connections_max)
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        conn.execute(pragma).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(DbError::Connect)?;
    Ok(Db { pool, backend })
}

/// Applies the back end's pending migrations.
pub async fn migrate(db: &Db, migrations: &Migrations) -> Result<(), DbError> {
    let list = match db.backend {
        Backend::Sqlite => migrations.sqlite,
        Backend::Postgres => migrations.postgres,
    };
    let migrations = list
        .iter()
        .enumerate()
        .map(|(i, (description, sql))| {
            Migration::new(
                i as i64 + 1,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations).run(&db.pool).await?;
    Ok(())
}

/// True when `err` is a unique-key violation (a concurrent duplicate insert).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// True when the database could not be reached or timed out, as opposed to refusing
/// the statement: the caller answers UNAVAILABLE.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
    )
}

fn sqlite_url(url: &str) -> Result<String, DbError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if !path.is_empty()
        && path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    })
}
