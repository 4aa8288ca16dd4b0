//! The cluster's three databases: the coordinator's (shared by the gateway and the
//! reconciler), the external institution's and the balance store's. SQLite files in the
//! cluster's directory by default; fresh PostgreSQL databases (dropped afterwards) when
//! asked for, or when `E2E_DATABASE=postgres`.

use std::path::Path;

use testkit::db::TestDatabase;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseChoice {
    /// `E2E_DATABASE=postgres` selects PostgreSQL (and an unreachable server fails the
    /// test); anything else SQLite.
    FromEnv,
    Sqlite,
    /// PostgreSQL where reachable; [`crate::Cluster::start_if_available`] skips loudly
    /// otherwise (unless `REQUIRE_POSTGRES=1`).
    Postgres,
}

impl DatabaseChoice {
    /// What `FromEnv` means in this process.
    pub fn resolve(self) -> DatabaseChoice {
        match self {
            DatabaseChoice::FromEnv => {
                if std::env::var("E2E_DATABASE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres")) {
                    DatabaseChoice::Postgres
                } else {
                    DatabaseChoice::Sqlite
                }
            }
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self.resolve() {
            DatabaseChoice::Postgres => "postgres",
            _ => "sqlite",
        }
    }
}

/// The URLs, and the guards that drop the PostgreSQL databases when the cluster goes.
pub struct Databases {
    pub coordinator: String,
    pub external: String,
    pub balance_store: String,
    _guards: Vec<TestDatabase>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases")
            .field("coordinator", &self.coordinator)
            .field("external", &self.external)
            .field("balance_store", &self.balance_store)
            .finish()
    }
}

/// SQLite files under `dir`.
pub fn sqlite(dir: &Path) -> Databases {
    let url = |name: &str| format!("sqlite://{}", dir.join(name).display());
    Databases {
        coordinator: url("coordinator.db"),
        external: url("external-institution.db"),
        balance_store: url("balance-store.db"),
        _guards: Vec::new(),
    }
}

/// Three fresh PostgreSQL databases (on the server `admin_url` names, else the one
/// `BANKTRANSFER_TEST_POSTGRES_URL` names), or `None` when no server is reachable (after the
/// loud message of `testkit::db::postgres`, which fails instead under
/// `REQUIRE_POSTGRES=1`).
pub async fn postgres(admin_url: Option<&str>) -> Option<Databases> {
    let create = async |name: &str| match admin_url {
        Some(admin) => testkit::db::postgres_at(admin, name).await,
        None => testkit::db::postgres(name).await,
    };
    let coordinator = create("e2e_coordinator").await?;
    let external = create("e2e_external").await?;
    let balance_store = create("e2e_balance_store").await?;
    Some(Databases {
        coordinator: coordinator.url.clone(),
        external: external.url.clone(),
        balance_store: balance_store.url.clone(),
        _guards: vec![coordinator, external, balance_store],
    })
}

/// The databases `choice` asks for (PostgreSQL ones on `admin_url`'s server when given); `None` only for an unreachable PostgreSQL chosen
/// explicitly with [`DatabaseChoice::Postgres`].
pub async fn provision(
    choice: DatabaseChoice,
    admin_url: Option<&str>,
    dir: &Path,
) -> Option<Databases> {
    match choice {
        DatabaseChoice::Sqlite => Some(sqlite(dir)),
        DatabaseChoice::Postgres => postgres(admin_url).await,
        DatabaseChoice::FromEnv => match choice.resolve() {
            DatabaseChoice::Postgres => Some(postgres(admin_url).await.unwrap_or_else(|| {
                panic!("E2E_DATABASE=postgres but PostgreSQL is unreachable (see above)")
            })),
            _ => Some(sqlite(dir)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_absolute_files_in_the_directory() {
        let dbs = sqlite(Path::new("/tmp/cluster"));
        assert_eq!(dbs.coordinator, "sqlite:///tmp/cluster/coordinator.db");
        assert_eq!(
            dbs.external,
            "sqlite:///tmp/cluster/external-institution.db"
        );
        assert_eq!(dbs.balance_store, "sqlite:///tmp/cluster/balance-store.db");
    }
}
