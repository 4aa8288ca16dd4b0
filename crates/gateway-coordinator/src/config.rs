//! The gateway's settings (every field has a default). The keys it shares with the
//! reconciler (the transfer log, the participants, `[budget]`, `[server]`, `[database]`) are
//! `coordinator::config::CommonSettings`, flattened here so they stay top-level.

use crate::admission::AdmissionSection;
use coordinator::config::{CommonSettings, validate_listen_addr};
use serde::Deserialize;
use service_kit::jwt::TokenSection;
use service_kit::tls::TlsSection;

/// Where `make pki` (`banktransfer-pki init`) puts the development certificates and keys.
pub const PKI_DIR_DEFAULT: &str = "data/pki";

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Settings {
    pub listen_addr: String,
    #[serde(flatten)]
    pub common: CommonSettings,
    /// Requests in flight at once; more are refused with RESOURCE_EXHAUSTED.
    pub in_flight_max: usize,
    /// `[auth]`: how user bearer tokens are checked (required).
    pub auth: TokenSection,
    /// `[tls]`: this service's certificate and key (served to clients, presented to the
    /// participants) and the CA that peers' certificates chain to (required).
    pub tls: TlsSection,
    /// The largest amount one ApproveTransfer may ask for, in minor units of its currency;
    /// above it: INVALID_ARGUMENT before anything is recorded. A bound on input, not a
    /// business limit: the balance store's `rules.transfer_minor_max` is that.
    pub amount_minor_max: i64,
    /// `[admission]`: ApproveTransfer's admission control (`crate::admission`).
    pub admission: AdmissionSection,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: "127.0.0.1:50051".into(),
            common: CommonSettings::default(),
            tls: TlsSection::in_dir(PKI_DIR_DEFAULT, "gateway-coordinator"),
            in_flight_max: 1_024,
            auth: TokenSection {
                verify_key_path: format!("{PKI_DIR_DEFAULT}/token-verify-key.pem"),
                ..TokenSection::default()
            },
            // 1,000,000.00 in a currency of two decimals.
            amount_minor_max: 100_000_000,
            admission: AdmissionSection::default(),
        }
    }
}

impl Settings {
    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), String> {
        validate_listen_addr(&self.listen_addr)?;
        self.common.validate()?;
        if self.in_flight_max == 0 {
            return Err("in_flight_max must be at least 1".into());
        }
        self.tls.validate().map_err(|e| e.to_string())?;
        if self.auth.verify_key_path.is_empty() {
            return Err(
                "auth.verify_key_path is required: the PEM public key that verifies user tokens"
                    .into(),
            );
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return Err("auth.issuer and auth.audience must not be empty".into());
        }
        if self.amount_minor_max <= 0 {
            return Err(format!(
                "amount_minor_max must be positive, got {}",
                self.amount_minor_max
            ));
        }
        self.admission.validate(self.common.budget.total_ms)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_protocol::budget::BudgetPolicy;

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
        assert_eq!(s.common.budget.policy(), BudgetPolicy::DEFAULT);
        assert_eq!(s.in_flight_max, 1_024);
        assert_eq!(s.amount_minor_max, 100_000_000);
        assert_eq!(s.admission.limit_initial, 32);
        assert_eq!(s.admission.per_user_in_flight_max, 16);
        s.validate().unwrap();
    }

    #[test]
    fn the_demo_configuration_spells_out_the_defaults() {
        let demo = load(
            include_str!("../../../config/gateway-coordinator.toml"),
            &[],
        );
        // ... except reflection, on for the local demo (off by default, as in production),
        let mut expected = Settings::default();
        expected.common.server.reflection = true;
        // ... and the metrics endpoint, off by default.
        expected.common.metrics.listen_addr = "127.0.0.1:9101".into();
        // ... and one Tokio worker: the four demo services share the machine.
        expected.common.server.worker_threads = 1;
        assert_eq!(demo, expected);
    }

    #[test]
    fn file_and_environment_set_the_exact_keys() {
        let s = load(
            "listen_addr = \"127.0.0.1:1\"\nin_flight_max = 7\namount_minor_max = 50\n\
             [budget]\ntotal_ms = 300\n\
             [database]\nconnections_max = 3\n[server]\nshutdown_grace_ms = 9\n\
             [admission]\nlimit_max = 64\n",
            &[
                ("BANKTRANSFER__BUDGET__AFTER_RESERVE_MS", "80"),
                ("BANKTRANSFER__ADMISSION__PER_USER_IN_FLIGHT_MAX", "2"),
            ],
        );
        assert_eq!(s.listen_addr, "127.0.0.1:1");
        assert_eq!(s.in_flight_max, 7);
        assert_eq!(s.amount_minor_max, 50);
        assert_eq!(s.common.budget.total_ms, 300);
        assert_eq!(s.common.budget.after_reserve_ms, 80);
        assert_eq!(s.common.budget.reply_margin_ms, 10);
        assert_eq!(s.common.budget.stale_margin_ms, 1_800);
        assert_eq!(s.common.database.connections_max, 3);
        assert_eq!(s.common.server.shutdown_grace_ms, 9);
        assert_eq!(s.common.server.request_timeout_ms, 30_000);
        assert_eq!(s.admission.limit_max, 64);
        assert_eq!(s.admission.per_user_in_flight_max, 2);
        assert_eq!(s.admission.limit_initial, 32);
        s.validate().unwrap();
    }

    #[test]
    fn validation_names_the_bad_key() {
        let bad = |edit: fn(&mut Settings)| {
            let mut s = Settings::default();
            edit(&mut s);
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.common.budget.after_reserve_ms = 500).contains("after_reserve_ms"));
        assert!(bad(|s| s.in_flight_max = 0).contains("in_flight_max"));
        assert!(bad(|s| s.admission.limit_min = 0).contains("limit_min"));
        assert!(bad(|s| s.common.budget.total_ms = 100).contains("latency_ms_max"));
        assert!(bad(|s| s.amount_minor_max = 0).contains("amount_minor_max"));
        assert!(bad(|s| s.common.database_url = "mysql://x".into()).contains("database_url"));
        assert!(bad(|s| s.common.log_format = "xml".into()).contains("log_format"));
        assert!(bad(|s| s.listen_addr = String::new()).contains("listen_addr"));
        assert!(
            bad(|s| s.common.balance_store_url = "127.0.0.1:1".into())
                .contains("balance_store_url")
        );
        assert!(bad(|s| s.common.connect_timeout_ms = 0).contains("connect_timeout_ms"));
    }
}
