//! Storage connection: SQLite (the embedded default, a file per service) or PostgreSQL,
//! chosen by the URL's scheme, behind one sqlx `AnyPool`, with embedded migrations per
//! back end (their DDL differs; the queries the services run are the same on both:
//! `$1` placeholders, `ON CONFLICT`, `RETURNING`).
//!
//! SQLite runs with one connection per process (SQLite has one writer anyway, and this
//! turns lock upgrades into queueing instead of SQLITE_BUSY), WAL and synchronous=FULL (a
//! committed write survives power loss), a busy timeout for other processes sharing
//! the file (the gateway and the reconciler share the coordinator's database), and a
//! background task that checkpoints the WAL so that no commit has to ([`checkpoint`]).

use std::borrow::Cow;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Executor, SqlStr};

pub mod checkpoint;

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

/// Every message holds database URLs with their passwords redacted ([`redact_passwords`]):
/// these errors end up in start-up output and logs.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL, redacted.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// The URL and the driver's message, both redacted (a driver may quote the URL). The
    /// driver's error is not kept as a source: its text would be printed unredacted.
    #[error("cannot connect to the database at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// What stands for a password in a redacted URL.
pub const REDACTED: &str = "***";

/// `text` with the password of every URL in it replaced by [`REDACTED`]:
/// `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`, and a
/// `password=...` query parameter loses its value too. Works on a single URL as on any
/// message that quotes URLs (a configuration error, a driver's error). It errs on the safe
/// side: a URL is taken to run to the next space or quote, so an `@` later in it (even in
/// the query) hides everything from the first `:` after the scheme up to that `@`.
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '\\'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let url = match url.rfind('@') {
            Some(at) => match url[..at].find(':') {
                Some(colon) => format!("{}:{REDACTED}{}", &url[..colon], &url[at..]),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        };
        out.push_str(&redact_password_parameter(&url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `password=VALUE` (PostgreSQL accepts it as a query parameter) with VALUE redacted.
fn redact_password_parameter(url: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find(KEY) {
        let value_start = at + KEY.len();
        out.push_str(&rest[..value_start]);
        out.push_str(REDACTED);
        let value_end = rest[value_start..]
            .find(['&', '#'])
            .map_or(rest.len(), |i| value_start + i);
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
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
    let backend =
        Backend::of_url(url).ok_or_else(|| DbError::UnsupportedUrl(redact_passwords(url)))?;
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
                        // Checkpoints are the background task's; this is its backstop.
                        checkpoint::BACKSTOP_PRAGMA,
                    ] {
                        conn.execute(pragma).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|err| DbError::Connect {
            url: redact_passwords(&url),
            detail: redact_passwords(&err.to_string()),
        })?;
    // Sampled only when metrics are on (installed before the pool is opened).
    crate::metrics::sample_pool(&pool);
    if backend == Backend::Sqlite && !is_in_memory(&url) {
        checkpoint::spawn(url, pool.clone());
    }
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

/// An in-memory SQLite database has no WAL to checkpoint.
fn is_in_memory(sqlite_url: &str) -> bool {
    sqlite_url.contains(":memory:") || sqlite_url.contains("mode=memory")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_passwords("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            redact_passwords("postgresql://user:s3cr%40t@host:5432/db?sslmode=require"),
            "postgresql://user:***@host:5432/db?sslmode=require"
        );
        // Unencoded '/', '@' and ':' in the password are hidden all the same.
        assert_eq!(
            redact_passwords("postgres://u:a/b@c:d@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_passwords("postgres://h/db?user=u&password=hunter2&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        for unchanged in [
            "postgres://user@host/db",
            "postgres://host/db",
            "sqlite://data/coordinator.db",
            "sqlite::memory:",
            "no url here: a:b@c",
            "",
        ] {
            assert_eq!(redact_passwords(unchanged), unchanged);
        }
    }

    #[test]
    fn passwords_in_messages_are_redacted_wherever_their_urls_stand() {
        let message = "database_url \"postgres://app:hunter2@db/x\" is wrong; \
                       also 'mysql://root:toor@h' and http://a:b@h/p";
        let redacted = redact_passwords(message);
        for secret in ["hunter2", "toor", ":b@"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(redacted.contains("postgres://app:***@db/x\""), "{redacted}");
        assert!(
            redacted.contains("is wrong; also 'mysql://root:***@h'"),
            "{redacted}"
        );
    }

    #[tokio::test]
    async fn connect_errors_never_show_the_password() {
        let err = connect("mysql://app:hunter2@127.0.0.1/x", PoolSettings::default())
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Nothing listens on port 1: the driver's own error must not show it either.
        let err = connect(
            "postgres://app:hunter2@127.0.0.1:1/x",
            PoolSettings {
                connections_max: 1,
                acquire_timeout: Duration::from_millis(500),
            },
        )
        .await
        .unwrap_err();
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, DbError::Connect { .. }), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@127.0.0.1:1/x"),
            "{shown}"
        );
    }
}
