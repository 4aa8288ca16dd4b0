//! The reconciler's settings (every field has a default). The keys it shares with the
//! gateway (the transfer log, the participants, `[budget]`, `[server]`, `[database]`) are
//! `coordinator::config::CommonSettings`, flattened here so they stay top-level.
//! `[budget]` must be the gateway's: an undecided transfer is aborted once it is
//! `budget.total_ms + budget.stale_margin_ms` old.

use std::time::Duration;

use banktransfer_protocol::audit::BOOK_PAGE_SIZE_MAX;
use banktransfer_protocol::reconcile::RetryPolicy;
use coordinator::config::{CommonSettings, validate_listen_addr};
use serde::Deserialize;
use service_kit::tls::TlsSection;

/// Audit requests may ask for at most this many transfers.
pub const AUDIT_LIMIT_MAX: u32 = 10_000;

/// Largest batch a pass may claim.
pub const BATCH_SIZE_MAX: u32 = 10_000;

/// Most pages of one participant's book (of reservations, of accounts) an audit reads.
pub const AUDIT_PAGES_MAX: u32 = 10_000;

// An audit's counts are u32: both books read whole fit.
const _: () =
    assert!(2 * (AUDIT_PAGES_MAX as u64) * (BOOK_PAGE_SIZE_MAX as u64) <= u32::MAX as u64);

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Settings {
    pub listen_addr: String,
    #[serde(flatten)]
    pub common: CommonSettings,
    /// Names this replica's leases; "" generates `hostname-pid`.
    pub replica_id: String,
    pub pass_interval_ms: u64,
    /// Transfers claimed per pass, at most.
    pub batch_size: u32,
    /// How long a claimed transfer stays this replica's; a dead replica's leases expire.
    pub lease_ms: u64,
    /// Deadline of every participant call.
    pub call_timeout_ms: u64,
    /// Attempts after which an unfinished transfer is logged at ERROR.
    pub attempts_alert: u32,
    /// Transfers an Audit checks when its request says 0.
    pub audit_limit_default: u32,
    /// Entries per page when an Audit reads a participant's book (ListReservations,
    /// ListAccounts); each page is one call with `call_timeout_ms` as its deadline.
    pub audit_page_size: u32,
    /// Pages of each book an Audit reads at most; past them the audit says it is
    /// incomplete.
    pub audit_pages_max: u32,
    pub retry: RetrySection,
    /// `[tls]`: this service's certificate and key (served to operators, presented to the
    /// participants) and the CA that peers' certificates chain to (required).
    pub tls: TlsSection,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: "127.0.0.1:50054".into(),
            common: CommonSettings::default(),
            tls: TlsSection::in_dir("data/pki", "reconciler"),
            replica_id: String::new(),
            pass_interval_ms: 500,
            batch_size: 100,
            lease_ms: 10_000,
            call_timeout_ms: 1_000,
            attempts_alert: 20,
            audit_limit_default: 1_000,
            audit_page_size: 500,
            audit_pages_max: 100,
            retry: RetrySection::default(),
        }
    }
}

/// See `banktransfer_protocol::reconcile::RetryPolicy`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RetrySection {
    pub backoff_ms_initial: u64,
    pub backoff_ms_max: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        let RetryPolicy {
            backoff_ms_initial,
            backoff_ms_max,
        } = RetryPolicy::DEFAULT;
        RetrySection {
            backoff_ms_initial,
            backoff_ms_max,
        }
    }
}

impl RetrySection {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff_ms_initial: self.backoff_ms_initial,
            backoff_ms_max: self.backoff_ms_max,
        }
    }
}

impl Settings {
    /// Checked once at start-up; the message names the key to fix.
    pub fn validate(&self) -> Result<(), String> {
        validate_listen_addr(&self.listen_addr)?;
        self.common.validate()?;
        self.tls.validate().map_err(|e| e.to_string())?;
        self.retry
            .policy()
            .validate()
            .map_err(|e| format!("retry: {e}"))?;
        let positive = [
            ("pass_interval_ms", self.pass_interval_ms),
            ("call_timeout_ms", self.call_timeout_ms),
            ("attempts_alert", u64::from(self.attempts_alert)),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        if !(1..=BATCH_SIZE_MAX).contains(&self.batch_size) {
            return Err(format!("batch_size must be within 1..={BATCH_SIZE_MAX}"));
        }
        if !(1..=AUDIT_LIMIT_MAX).contains(&self.audit_limit_default) {
            return Err(format!(
                "audit_limit_default must be within 1..={AUDIT_LIMIT_MAX}"
            ));
        }
        if !(1..=BOOK_PAGE_SIZE_MAX).contains(&self.audit_page_size) {
            return Err(format!(
                "audit_page_size must be within 1..={BOOK_PAGE_SIZE_MAX}"
            ));
        }
        if !(1..=AUDIT_PAGES_MAX).contains(&self.audit_pages_max) {
            return Err(format!(
                "audit_pages_max must be within 1..={AUDIT_PAGES_MAX}"
            ));
        }
        // A lease must outlast the work on one transfer: its decision write, then
        // confirms or cancels bounded by one call timeout, then the outcome write.
        if self.lease_ms < 2 * self.call_timeout_ms {
            return Err(format!(
                "lease_ms ({}) must be at least twice call_timeout_ms ({})",
                self.lease_ms, self.call_timeout_ms
            ));
        }
        Ok(())
    }

    pub fn pass_interval(&self) -> Duration {
        Duration::from_millis(self.pass_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_protocol::budget::BudgetPolicy;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let s: Settings = service_kit::config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen_addr, "127.0.0.1:50054");
        assert_eq!(s.common.database_url, "sqlite://data/coordinator.db");
        assert_eq!(s.retry.policy(), RetryPolicy::DEFAULT);
        assert_eq!(s.common.budget.policy(), BudgetPolicy::DEFAULT);
        assert_eq!(
            (
                s.pass_interval_ms,
                s.batch_size,
                s.lease_ms,
                s.call_timeout_ms
            ),
            (500, 100, 10_000, 1_000)
        );
        assert_eq!((s.attempts_alert, s.audit_limit_default), (20, 1_000));
        assert_eq!((s.audit_page_size, s.audit_pages_max), (500, 100));
        s.validate().unwrap();
    }

    #[test]
    fn the_demo_configuration_spells_out_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reconciler.toml");
        std::fs::write(&path, include_str!("../../../config/reconciler.toml")).unwrap();
        let demo: Settings = service_kit::config::load_with_env(Some(&path), Vec::new()).unwrap();
        // ... except reflection, on for the local demo (off by default, as in production),
        let mut expected = Settings::default();
        expected.common.server.reflection = true;
        // ... and the metrics endpoint, off by default.
        expected.common.metrics.listen_addr = "127.0.0.1:9104".into();
        // ... and one Tokio worker: the four demo services share the machine.
        expected.common.server.worker_threads = 1;
        assert_eq!(demo, expected);
    }

    #[test]
    fn environment_sets_nested_keys() {
        let env = vec![
            (
                "BANKTRANSFER__BUDGET__STALE_MARGIN_MS".to_string(),
                "5000".to_string(),
            ),
            ("BANKTRANSFER__REPLICA_ID".to_string(), "r-7".to_string()),
            (
                "BANKTRANSFER__DATABASE__CONNECTIONS_MAX".to_string(),
                "4".to_string(),
            ),
        ];
        let s: Settings = service_kit::config::load_with_env(None, env).unwrap();
        assert_eq!(s.common.budget.stale_margin_ms, 5_000);
        assert_eq!(s.common.budget.policy().stale_after_ms(), 5_200);
        assert_eq!(s.replica_id, "r-7");
        assert_eq!(s.common.database.connections_max, 4);
        s.validate().unwrap();
    }

    #[test]
    fn validation_names_the_bad_key() {
        let bad = |edit: fn(&mut Settings)| {
            let mut s = Settings::default();
            edit(&mut s);
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.common.budget.stale_margin_ms = 0).contains("stale_margin_ms"));
        assert!(bad(|s| s.retry.backoff_ms_initial = 0).contains("backoff_ms_initial"));
        assert!(bad(|s| s.batch_size = 0).contains("batch_size"));
        assert!(bad(|s| s.audit_limit_default = 20_000).contains("audit_limit_default"));
        assert!(bad(|s| s.audit_page_size = 1_001).contains("audit_page_size"));
        assert!(bad(|s| s.audit_page_size = 0).contains("audit_page_size"));
        assert!(bad(|s| s.audit_pages_max = 0).contains("audit_pages_max"));
        assert!(bad(|s| s.lease_ms = 1_500).contains("lease_ms"));
        assert!(bad(|s| s.pass_interval_ms = 0).contains("pass_interval_ms"));
        assert!(bad(|s| s.common.external_url = String::new()).contains("external_url"));
    }
}
