//! The balance store's settings: the common participant keys plus `[rules]`. Every key
//! has a default, so the service starts without a file.

use participant::config::{DatabaseConfig, SeedAccount, ServerConfig, validate_common};
use serde::Deserialize;
use service_kit::config::ConfigError;

use crate::rules::Rules;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen_addr: String,
    pub database_url: String,
    /// `pretty` for people, `json` for machines.
    pub log_format: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// Antifraud, limits and rate limit, run on every new reserve.
    pub rules: Rules,
    /// Accounts opened at start-up (unless they exist already).
    pub accounts: Vec<SeedAccount>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: "127.0.0.1:50053".into(),
            database_url: "sqlite://data/balance-store.db".into(),
            log_format: "pretty".into(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            rules: Rules::default(),
            accounts: Vec::new(),
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_common(
            &self.listen_addr,
            &self.database_url,
            &self.log_format,
            &self.server,
            &self.database,
            &self.accounts,
        )?;
        self.rules.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_a_file_and_are_valid() {
        let settings: Settings = service_kit::config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.listen_addr, "127.0.0.1:50053");
        assert_eq!(settings.rules.rate_limit_max_reserves, 30);
        settings.validate().unwrap();
    }

    #[test]
    fn rules_are_overridable_from_the_environment() {
        let env = vec![
            (
                "BANKTRANSFER__RULES__MAX_TRANSFER_MINOR".to_string(),
                "500".to_string(),
            ),
            (
                "BANKTRANSFER__RULES__RATE_LIMIT_WINDOW_MS".to_string(),
                "0".to_string(),
            ),
        ];
        let settings: Settings = service_kit::config::load_with_env(None, env).unwrap();
        assert_eq!(settings.rules.max_transfer_minor, 500);
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("rate_limit_window_ms"), "{err}");
    }

    #[test]
    fn the_demo_configuration_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/balance-store.toml");
        let settings: Settings =
            service_kit::config::load_with_env(Some(&path), Vec::new()).unwrap();
        settings.validate().unwrap();
        let ids: Vec<&str> = settings
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(ids, ["int-alice", "int-bob"]);
        assert_eq!(settings.rules, Rules::default());
    }
}
