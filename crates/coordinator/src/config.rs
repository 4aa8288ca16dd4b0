//! The settings the gateway and the reconciler share: both read the same transfer log
//! and call the same participants. Each service flattens [`CommonSettings`] into its own
//! `Settings`, so the keys stay top-level in its TOML file (`database_url`,
//! `external_url`, ...) and in the environment (`BANKTRANSFER__DATABASE_URL`).
//!
//! `[budget]` is shared too: the gateway answers within it, and both services judge an
//! undecided transfer stale by it (`banktransfer_protocol::reconcile::takeover`), so the
//! two can never disagree about when a live request is over.

use std::time::Duration;

use banktransfer_protocol::budget::BudgetPolicy;
use serde::Deserialize;
use service_kit::client::validate_peer_url;
use service_kit::db::{Backend, PoolSettings};
use service_kit::metrics::MetricsSection;
use service_kit::server::ServerSection;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CommonSettings {
    /// The coordinator's transfer log, shared by the gateway and the reconciler.
    pub database_url: String,
    /// "pretty" or "json".
    pub log_format: String,
    pub external_url: String,
    pub balance_store_url: String,
    pub connect_timeout_ms: u64,
    pub budget: BudgetSection,
    pub server: ServerSection,
    pub database: DatabaseSection,
    /// `[metrics]`: the Prometheus endpoint (off unless `listen_addr` is set).
    pub metrics: MetricsSection,
}

impl Default for CommonSettings {
    fn default() -> Self {
        CommonSettings {
            database_url: "sqlite://data/coordinator.db".into(),
            log_format: "pretty".into(),
            external_url: "https://127.0.0.1:50052".into(),
            balance_store_url: "https://127.0.0.1:50053".into(),
            connect_timeout_ms: 1_000,
            budget: BudgetSection::default(),
            server: ServerSection::default(),
            database: DatabaseSection::default(),
            metrics: MetricsSection::default(),
        }
    }
}

impl CommonSettings {
    /// Checked once at start-up; the message names the key to fix and never echoes the
    /// database URL (it may carry a password).
    pub fn validate(&self) -> Result<(), String> {
        if Backend::of_url(&self.database_url).is_none() {
            return Err("database_url: use sqlite://PATH or postgres://USER@HOST/DB".into());
        }
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            return Err(format!(
                "log_format {:?}: use \"pretty\" or \"json\"",
                self.log_format
            ));
        }
        for (key, url) in [
            ("external_url", &self.external_url),
            ("balance_store_url", &self.balance_store_url),
        ] {
            validate_peer_url(key, url)?;
        }
        let positive = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            (
                "database.acquire_timeout_ms",
                self.database.acquire_timeout_ms,
            ),
            (
                "database.connections_max",
                u64::from(self.database.connections_max),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        self.server.validate().map_err(|e| e.to_string())?;
        self.metrics.validate().map_err(|e| e.to_string())?;
        self.budget.policy().validate()?;
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Checks a listen address: host names are fine (the binary resolves them when it
/// binds); empty is not.
pub fn validate_listen_addr(listen_addr: &str) -> Result<(), String> {
    if listen_addr.is_empty() {
        return Err("listen_addr is required, e.g. \"127.0.0.1:50051\"".into());
    }
    Ok(())
}

/// The deadline budget promised to clients, and the staleness threshold derived from it
/// (see `banktransfer_protocol::budget`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BudgetSection {
    pub total_ms: u64,
    pub after_reserve_ms: u64,
    pub reply_margin_ms: u64,
    pub stale_margin_ms: u64,
}

impl Default for BudgetSection {
    fn default() -> Self {
        let BudgetPolicy {
            total_ms,
            after_reserve_ms,
            reply_margin_ms,
            stale_margin_ms,
        } = BudgetPolicy::DEFAULT;
        BudgetSection {
            total_ms,
            after_reserve_ms,
            reply_margin_ms,
            stale_margin_ms,
        }
    }
}

impl BudgetSection {
    pub fn policy(&self) -> BudgetPolicy {
        BudgetPolicy {
            total_ms: self.total_ms,
            after_reserve_ms: self.after_reserve_ms,
            reply_margin_ms: self.reply_margin_ms,
            stale_margin_ms: self.stale_margin_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DatabaseSection {
    pub connections_max: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            connections_max: 10,
            acquire_timeout_ms: 2_000,
        }
    }
}

impl DatabaseSection {
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            connections_max: self.connections_max,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_key_and_hides_the_database_url() {
        let valid = CommonSettings::default;
        let bad = |edit: fn(&mut CommonSettings)| {
            let mut s = valid();
            edit(&mut s);
            s.validate().unwrap_err()
        };
        valid().validate().unwrap();
        let secret = bad(|s| s.database_url = "mysql://u:hunter2@h/db".into());
        assert!(secret.contains("database_url"));
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(bad(|s| s.log_format = "xml".into()).contains("log_format"));
        assert!(bad(|s| s.balance_store_url = "127.0.0.1:1".into()).contains("balance_store_url"));
        assert!(bad(|s| s.external_url = String::new()).contains("external_url"));
        let peer = bad(|s| s.external_url = "grpc://u:hunter2@h:1".into());
        // The message names the key and never echoes the URL (it may carry a password).
        assert!(
            peer.contains("external_url") && !peer.contains("hunter2"),
            "{peer}"
        );
        assert!(bad(|s| s.connect_timeout_ms = 0).contains("connect_timeout_ms"));
        assert!(bad(|s| s.database.connections_max = 0).contains("connections_max"));
        assert!(bad(|s| s.budget.after_reserve_ms = 500).contains("after_reserve_ms"));
        assert!(bad(|s| s.budget.stale_margin_ms = 0).contains("stale_margin_ms"));
        assert!(
            validate_listen_addr("")
                .unwrap_err()
                .contains("listen_addr")
        );
    }
}
