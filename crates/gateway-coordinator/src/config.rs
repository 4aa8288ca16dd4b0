//! The gateway's settings (every field has a default), plus the `[server]` and
//! `[database]` sections the reconciler shares.

use std::time::Duration;

use banktransfer_protocol::budget::BudgetPolicy;
use serde::Deserialize;
use service_kit::db::{Backend, PoolSettings};
use service_kit::server::ServerSettings;

use crate::fault::FaultPoints;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Settings {
    pub listen_addr: String,
    /// The coordinator's transfer log, shared with the reconciler.
    pub database_url: String,
    /// "pretty" or "json".
    pub log_format: String,
    pub external_url: String,
    pub ledger_url: String,
    pub connect_timeout_ms: u64,
    /// Requests in flight at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    pub budget: BudgetSection,
    pub server: ServerSection,
    pub database: DatabaseSection,
    /// TEST-ONLY: see [`crate::fault`].
    pub fault_points: FaultPointsSection,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: "127.0.0.1:50051".into(),
            database_url: "sqlite://data/coordinator.db".into(),
            log_format: "pretty".into(),
            external_url: "http://127.0.0.1:50052".into(),
            ledger_url: "http://127.0.0.1:50053".into(),
            connect_timeout_ms: 1_000,
            max_in_flight: 1_024,
            budget: BudgetSection::default(),
            server: ServerSection::default(),
            database: DatabaseSection::default(),
            fault_points: FaultPointsSection::default(),
        }
    }
}

/// The deadline budget promised to clients (see `banktransfer_protocol::budget`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BudgetSection {
    pub total_ms: u64,
    pub after_reserve_ms: u64,
    pub reply_margin_ms: u64,
}

impl Default for BudgetSection {
    fn default() -> Self {
        let BudgetPolicy {
            total_ms,
            after_reserve_ms,
            reply_margin_ms,
        } = BudgetPolicy::DEFAULT;
        BudgetSection {
            total_ms,
            after_reserve_ms,
            reply_margin_ms,
        }
    }
}

impl BudgetSection {
    pub fn policy(&self) -> BudgetPolicy {
        BudgetPolicy {
            total_ms: self.total_ms,
            after_reserve_ms: self.after_reserve_ms,
            reply_margin_ms: self.reply_margin_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ServerSection {
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl ServerSection {
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            ..ServerSettings::default()
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DatabaseSection {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            max_connections: 10,
            acquire_timeout_ms: 2_000,
        }
    }
}

impl DatabaseSection {
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FaultPointsSection {
    /// "" (off), "after_reserve" or "after_decision".
    pub pause_at: String,
    pub pause_ms: u64,
}

impl Default for FaultPointsSection {
    fn default() -> Self {
        FaultPointsSection {
            pause_at: String::new(),
            pause_ms: 60_000,
        }
    }
}

impl Settings {
    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), String> {
        validate_common(
            &self.listen_addr,
            &self.database_url,
            &self.log_format,
            &[
                ("external_url", &self.external_url),
                ("ledger_url", &self.ledger_url),
            ],
            self.connect_timeout_ms,
            &self.server,
            &self.database,
        )?;
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        self.budget.policy().validate()?;
        self.fault_points()?;
        Ok(())
    }

    pub fn fault_points(&self) -> Result<FaultPoints, String> {
        FaultPoints::parse(&self.fault_points.pause_at, self.fault_points.pause_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// The checks every service sharing the coordinator's database makes.
pub fn validate_common(
    listen_addr: &str,
    database_url: &str,
    log_format: &str,
    urls: &[(&str, &str)],
    connect_timeout_ms: u64,
    server: &ServerSection,
    database: &DatabaseSection,
) -> Result<(), String> {
    // Host names are fine (the binary resolves them when it binds); empty is not.
    if listen_addr.is_empty() {
        return Err("listen_addr is required, e.g. \"127.0.0.1:50051\"".into());
    }
    if Backend::of_url(database_url).is_none() {
        return Err(format!(
            "database_url {database_url:?}: use sqlite://PATH or postgres://USER@HOST/DB"
        ));
    }
    if !matches!(log_format, "pretty" | "json") {
        return Err(format!(
            "log_format {log_format:?}: use \"pretty\" or \"json\""
        ));
    }
    for (key, url) in urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{key} {url:?}: use http://HOST:PORT"));
        }
    }
    let positive = [
        ("connect_timeout_ms", connect_timeout_ms),
        ("server.request_timeout_ms", server.request_timeout_ms),
        ("database.acquire_timeout_ms", database.acquire_timeout_ms),
        (
            "database.max_connections",
            u64::from(database.max_connections),
        ),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(format!("{key} must be positive"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        service_kit::config::load_with_env(Some(&path), env).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let s: Settings = load("", &[]);
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen_addr, "127.0.0.1:50051");
        assert_eq!(s.budget.policy(), BudgetPolicy::DEFAULT);
        assert_eq!(s.max_in_flight, 1_024);
        assert_eq!(s.fault_points.pause_ms, 60_000);
        assert_eq!(s.fault_points().unwrap(), FaultPoints::off());
        s.validate().unwrap();
    }

    #[test]
    fn the_demo_configuration_spells_out_the_defaults() {
        let demo = load(
            include_str!("../../../config/gateway-coordinator.toml"),
            &[],
        );
        assert_eq!(demo, Settings::default());
    }

    #[test]
    fn file_and_environment_set_the_exact_keys() {
        let s = load(
            "listen_addr = \"127.0.0.1:1\"\nmax_in_flight = 7\n[budget]\ntotal_ms = 300\n\
             [fault_points]\npause_at = \"after_decision\"\npause_ms = 5\n\
             [database]\nmax_connections = 3\n[server]\nshutdown_grace_ms = 9\n",
            &[("BANKTRANSFER__BUDGET__AFTER_RESERVE_MS", "80")],
        );
        assert_eq!(s.listen_addr, "127.0.0.1:1");
        assert_eq!(s.max_in_flight, 7);
        assert_eq!(s.budget.total_ms, 300);
        assert_eq!(s.budget.after_reserve_ms, 80);
        assert_eq!(s.budget.reply_margin_ms, 10);
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.server.shutdown_grace_ms, 9);
        assert_eq!(s.server.request_timeout_ms, 30_000);
        assert_ne!(s.fault_points().unwrap(), FaultPoints::off());
        s.validate().unwrap();
    }

    #[test]
    fn validation_names_the_bad_key() {
        let bad = |edit: fn(&mut Settings)| {
            let mut s = Settings::default();
            edit(&mut s);
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.budget.after_reserve_ms = 500).contains("after_reserve_ms"));
        assert!(bad(|s| s.max_in_flight = 0).contains("max_in_flight"));
        assert!(bad(|s| s.fault_points.pause_at = "later".into()).contains("pause_at"));
        assert!(bad(|s| s.database_url = "mysql://x".into()).contains("database_url"));
        assert!(bad(|s| s.log_format = "xml".into()).contains("log_format"));
        assert!(bad(|s| s.listen_addr = String::new()).contains("listen_addr"));
        assert!(bad(|s| s.ledger_url = "127.0.0.1:1".into()).contains("ledger_url"));
        assert!(bad(|s| s.connect_timeout_ms = 0).contains("connect_timeout_ms"));
    }
}
