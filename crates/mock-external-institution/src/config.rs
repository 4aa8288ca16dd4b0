//! The external institution's settings: the common participant keys, nothing else.
//! Every key has a default, so the service starts without a file.

use participant::config::{DatabaseConfig, SeedAccount, ServerConfig, validate_common};
use serde::Deserialize;
use service_kit::config::ConfigError;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub listen_addr: String,
    pub database_url: String,
    /// `pretty` for people, `json` for machines.
    pub log_format: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// Accounts opened at start-up (unless they exist already).
    pub accounts: Vec<SeedAccount>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: "127.0.0.1:50052".into(),
            database_url: "sqlite://data/external-institution.db".into(),
            log_format: "pretty".into(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
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
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_a_file_and_are_valid() {
        let settings: Settings = service_kit::config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.listen_addr, "127.0.0.1:50052");
        settings.validate().unwrap();
    }

    #[test]
    fn the_demo_configuration_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/external-institution.toml");
        let settings: Settings =
            service_kit::config::load_with_env(Some(&path), Vec::new()).unwrap();
        settings.validate().unwrap();
        let ids: Vec<&str> = settings
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(ids, ["ext-alice", "ext-bob"]);
        assert!(
            settings
                .accounts
                .iter()
                .all(|a| a.opening_balance_minor == 100_000)
        );
    }
}
