//! The balance store's settings: the keys every participant has (flattened, so they stay
//! top-level), with the balance store's defaults, plus `[rules]`. Every key has a default,
//! so the service starts without a file.

use participant::config::{CommonSettings, Defaults};
use serde::Deserialize;
use service_kit::config::ConfigError;

use crate::rules::Rules;

/// The balance store's defaults (`make run` listens there too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceStoreDefaults;

impl Defaults for BalanceStoreDefaults {
    const SERVICE_NAME: &'static str = "internal-balance-store";
    const LISTEN_ADDR: &'static str = "127.0.0.1:50053";
    const DATABASE_URL: &'static str = "sqlite://data/balance-store.db";
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub common: CommonSettings<BalanceStoreDefaults>,
    /// Antifraud, limits and rate limit, run on every new reserve.
    pub rules: Rules,
}

impl Settings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate()?;
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
        assert_eq!(settings.common.listen_addr, "127.0.0.1:50053");
        assert_eq!(
            settings.common.database_url,
            "sqlite://data/balance-store.db"
        );
        assert_eq!(settings.rules.rate_limit_reserves_max, 30);
        settings.validate().unwrap();
    }

    #[test]
    fn rules_are_overridable_from_the_environment() {
        let env = vec![
            (
                "BANKTRANSFER__RULES__TRANSFER_MINOR_MAX".to_string(),
                "500".to_string(),
            ),
            (
                "BANKTRANSFER__RULES__RATE_LIMIT_WINDOW_MS".to_string(),
                "0".to_string(),
            ),
        ];
        let settings: Settings = service_kit::config::load_with_env(None, env).unwrap();
        assert_eq!(settings.rules.transfer_minor_max, 500);
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("rate_limit_window_ms"), "{err}");
    }

    #[test]
    fn the_demo_configuration_loads() {
        let path = participant::config::demo_file("balance-store.toml");
        let settings: Settings =
            service_kit::config::load_with_env(Some(&path), Vec::new()).unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.rules, Rules::default());
        let common = settings.common;
        let ids: Vec<&str> = common
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(ids, ["int-alice", "int-bob"]);
        assert_eq!(common.listen_addr, Settings::default().common.listen_addr);
    }
}
