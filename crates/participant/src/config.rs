//! The configuration both participants share: the `[server]` and `[database]` sections,
//! the `[[accounts]]` to open at start-up, and the checks on the common top-level keys.
//! Each service's own `Settings` holds these next to its own keys.

use std::collections::HashSet;
use std::time::Duration;

use banktransfer_protocol::money::Money;
use serde::Deserialize;
use service_kit::config::ConfigError;
use service_kit::db::{Backend, PoolSettings};
use service_kit::server::ServerSettings;

use crate::book::NewAccount;
use crate::ids::check_id;

/// `[server]`: the gRPC server shell.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Upper bound on any request, whatever deadline the client sent.
    pub request_timeout_ms: u64,
    /// After the shutdown signal, how long in-flight requests may still run.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms must be positive"));
        }
        Ok(())
    }

    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            ..ServerSettings::default()
        }
    }
}

/// `[database]`: the connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// PostgreSQL only; SQLite always uses one connection per process.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails UNAVAILABLE.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 10,
            acquire_timeout_ms: 2_000,
        }
    }
}

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid("database.max_connections must be at least 1"));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(invalid("database.acquire_timeout_ms must be positive"));
        }
        Ok(())
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.max_connections,
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

/// Checks the keys every participant has, with the names they have in the file.
pub fn validate_common(
    listen_addr: &str,
    database_url: &str,
    log_format: &str,
    server: &ServerConfig,
    database: &DatabaseConfig,
    accounts: &[SeedAccount],
) -> Result<(), ConfigError> {
    if listen_addr.trim().is_empty() {
        return Err(invalid("listen_addr is empty: set it to HOST:PORT"));
    }
    if Backend::of_url(database_url).is_none() {
        return Err(invalid(format!(
            "database_url {database_url:?} is neither sqlite://PATH nor postgres://USER@HOST/DB"
        )));
    }
    if !matches!(log_format, "pretty" | "json") {
        return Err(invalid(format!(
            "log_format {log_format:?} is unknown: use \"pretty\" or \"json\""
        )));
    }
    server.validate()?;
    database.validate()?;
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

    fn validate(accounts: &[SeedAccount]) -> Result<(), ConfigError> {
        validate_common(
            "127.0.0.1:0",
            "sqlite://data/x.db",
            "pretty",
            &ServerConfig::default(),
            &DatabaseConfig::default(),
            accounts,
        )
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
        let err = validate_common(
            "127.0.0.1:0",
            "mysql://x",
            "pretty",
            &ServerConfig::default(),
            &DatabaseConfig::default(),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        let err = validate_common(
            "127.0.0.1:0",
            "sqlite://x.db",
            "xml",
            &ServerConfig::default(),
            &DatabaseConfig::default(),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("log_format"), "{err}");
        let zero_pool = DatabaseConfig {
            max_connections: 0,
            ..DatabaseConfig::default()
        };
        assert!(zero_pool.validate().is_err());
    }
}
