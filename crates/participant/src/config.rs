//! The configuration both participants share: [`CommonSettings`], the top-level keys
//! (`listen_addr`, `database_url`, `log_format`), the `[server]` and `[database]` sections
//! and the `[[accounts]]` to open at start-up, with their checks. A participant with keys
//! of its own flattens it into its `Settings` (`#[serde(flatten)]`), so the keys stay
//! top-level in its TOML file and in the environment; one without uses it as it is.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::time::Duration;

use banktransfer_protocol::money::Money;
use serde::Deserialize;
use service_kit::config::ConfigError;
use service_kit::db::{Backend, PoolSettings};
use service_kit::metrics::MetricsSection;
use service_kit::server::ServerSection;
use service_kit::tls::TlsSection;

use crate::book::NewAccount;
use banktransfer_protocol::ids::check_id;

/// Where a participant listens and keeps its data unless told otherwise.
pub trait Defaults {
    /// The service's name: its certificate is `data/pki/<SERVICE_NAME>.pem` by default.
    const SERVICE_NAME: &'static str;
    const LISTEN_ADDR: &'static str;
    const DATABASE_URL: &'static str;
}

/// The keys every participant has; `D` says its defaults. Every key has a default, so a
/// participant starts without a file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, bound = "")]
pub struct CommonSettings<D: Defaults> {
    pub listen_addr: String,
    pub database_url: String,
    /// `pretty` for people, `json` for machines.
    pub log_format: String,
    pub server: ServerSection,
    pub database: DatabaseConfig,
    /// `[metrics]`: the Prometheus endpoint (off unless `listen_addr` is set).
    pub metrics: MetricsSection,
    /// This service's certificate and key, and the CA its callers' certificates must chain
    /// to (required).
    pub tls: TlsSection,
    /// Accounts opened at start-up (unless they exist already).
    pub accounts: Vec<SeedAccount>,
    /// Which participant's defaults apply (no key of its own).
    #[serde(skip)]
    pub defaults: PhantomData<D>,
}

impl<D: Defaults> Default for CommonSettings<D> {
    fn default() -> Self {
        CommonSettings {
            listen_addr: D::LISTEN_ADDR.into(),
            database_url: D::DATABASE_URL.into(),
            log_format: "pretty".into(),
            server: ServerSection::default(),
            database: DatabaseConfig::default(),
            metrics: MetricsSection::default(),
            tls: TlsSection::in_dir("data/pki", D::SERVICE_NAME),
            accounts: Vec::new(),
            defaults: PhantomData,
        }
    }
}

impl<D: Defaults> CommonSettings<D> {
    /// Checks every key, with the names it has in the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen_addr.trim().is_empty() {
            return Err(invalid("listen_addr is empty: set it to HOST:PORT"));
        }
        if Backend::of_url(&self.database_url).is_none() {
            return Err(invalid(format!(
                "database_url {:?} is neither sqlite://PATH nor postgres://USER@HOST/DB",
                service_kit::db::redact_passwords(&self.database_url)
            )));
        }
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            return Err(invalid(format!(
                "log_format {:?} is unknown: use \"pretty\" or \"json\"",
                self.log_format
            )));
        }
        self.server.validate()?;
        self.metrics.validate()?;
        self.tls.validate().map_err(|e| invalid(e.to_string()))?;
        self.database.validate()?;
        validate_accounts(&self.accounts)
    }
}

/// `[database]`: the connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// PostgreSQL only; SQLite always uses one connection per process.
    pub connections_max: u32,
    /// How long a request waits for a free connection before it fails UNAVAILABLE.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            connections_max: 10,
            acquire_timeout_ms: 2_000,
        }
    }
}

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections_max == 0 {
            return Err(invalid("database.connections_max must be at least 1"));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(invalid("database.acquire_timeout_ms must be positive"));
        }
        Ok(())
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            connections_max: self.connections_max,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

/// One `[[accounts]]` entry: an account opened at start-up unless it exists already.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SeedAccount {
    pub account_id: String,
    pub user_id: String,
    /// ISO 4217 code, e.g. "USD".
    pub currency: String,
    /// Applies only when the account is created; zero when omitted.
    #[serde(default)]
    pub opening_balance_minor: i64,
}

impl SeedAccount {
    pub fn new_account(&self) -> Result<NewAccount, ConfigError> {
        let context = |why: String| invalid(format!("accounts entry {:?}: {why}", self.account_id));
        check_id("account_id", &self.account_id).map_err(context)?;
        check_id("user_id", &self.user_id).map_err(context)?;
        let opening_balance = Money::non_negative(self.opening_balance_minor, &self.currency)
            .map_err(|e| context(e.to_string()))?;
        Ok(NewAccount {
            account_id: self.account_id.clone(),
            user_id: self.user_id.clone(),
            opening_balance,
        })
    }
}

/// `config/NAME`, the demo settings `make run` starts the services with (the services'
/// tests check that their demo file loads and matches their defaults).
pub fn demo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

/// Each seed account is valid and listed once.
fn validate_accounts(accounts: &[SeedAccount]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for account in accounts {
        account.new_account()?;
        if !seen.insert(account.account_id.as_str()) {
            return Err(invalid(format!(
                "accounts: account_id {:?} is listed twice",
                account.account_id
            )));
        }
    }
    Ok(())
}

fn invalid(why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(account_id: &str, currency: &str, opening: i64) -> SeedAccount {
        SeedAccount {
            account_id: account_id.into(),
            user_id: "alice".into(),
            currency: currency.into(),
            opening_balance_minor: opening,
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct TestDefaults;

    impl Defaults for TestDefaults {
        const SERVICE_NAME: &'static str = "test-participant";
        const LISTEN_ADDR: &'static str = "127.0.0.1:1";
        const DATABASE_URL: &'static str = "sqlite://data/x.db";
    }

    type Settings = CommonSettings<TestDefaults>;

    fn validate(accounts: &[SeedAccount]) -> Result<(), ConfigError> {
        Settings {
            accounts: accounts.to_vec(),
            ..Settings::default()
        }
        .validate()
    }

    #[test]
    fn defaults_come_from_the_participant() {
        let settings: Settings = service_kit::config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.listen_addr, "127.0.0.1:1");
        assert_eq!(settings.database_url, "sqlite://data/x.db");
        settings.validate().unwrap();
    }

    #[test]
    fn seed_accounts_are_checked_like_requests() {
        assert!(validate(&[seed("a", "USD", 0), seed("b", "USD", 100)]).is_ok());
        for bad in [
            seed("", "USD", 0),
            seed("a", "usd", 0),
            seed("a", "USD", -1),
        ] {
            assert!(
                validate(std::slice::from_ref(&bad)).is_err(),
                "{bad:?} accepted"
            );
        }
        let twice = validate(&[seed("a", "USD", 0), seed("a", "USD", 0)]).unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
    }

    #[test]
    fn common_keys_are_checked_by_name() {
        let mysql = Settings {
            database_url: "mysql://x".into(),
            ..Settings::default()
        };
        let err = mysql.validate().unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        let with_password = Settings {
            database_url: "mysql://app:hunter2@db/x".into(),
            ..Settings::default()
        };
        let err = with_password.validate().unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mysql://app:***@db/x"), "{shown}");
        let xml = Settings {
            log_format: "xml".into(),
            ..Settings::default()
        };
        let err = xml.validate().unwrap_err();
        assert!(err.to_string().contains("log_format"), "{err}");
        let no_addr = Settings {
            listen_addr: " ".into(),
            ..Settings::default()
        };
        let err = no_addr.validate().unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let zero_pool = DatabaseConfig {
            connections_max: 0,
            ..DatabaseConfig::default()
        };
        assert!(zero_pool.validate().is_err());
    }
}
