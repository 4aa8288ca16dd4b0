//! The tool's own cluster: the four release binaries started by the e2e harness, with the
//! load's users' accounts opened by configuration, the deployment's gateway settings
//! where the harness has a knob for them, and the balance store's per-user rules relaxed
//! so that none of them refuses a load transfer (the load measures the transfer path, not
//! the rate limiter: 1-cent transfers over thousands of users never meet the other rules).

use std::path::PathBuf;

use banktransfer_e2e::config::Budget;
use banktransfer_e2e::{ClusterConfig, DatabaseChoice};

use crate::users;

/// The configuration of the tool's own cluster.
pub fn config(
    users: u32,
    database: DatabaseChoice,
    bin_dir: Option<PathBuf>,
    postgres_admin_url: Option<String>,
) -> ClusterConfig {
    let mut config = ClusterConfig {
        accounts: users::account_specs(users),
        database,
        bin_dir,
        postgres_admin_url,
        ..ClusterConfig::default()
    };
    // Relaxed per-user rules: no reserve of the load is RATE_LIMITED or over a limit.
    config.rules.rate_limit_reserves_max = 1_000_000_000;
    config.rules.daily_inbound_limit_minor = i64::MAX / 4;
    config.rules.blocked_users.clear();
    // As config/gateway-coordinator.toml deploys them (the harness's defaults are tuned
    // for small debug tests).
    config.gateway.in_flight_max = 1024;
    // Admission as deployed (config/gateway-coordinator.toml's defaults), not the e2e
    // suites' wider one: the overload figures are about exactly this.
    config.gateway.limit_initial = 32;
    config.gateway.per_user_in_flight_max = 16;
    config.gateway.connect_timeout_ms = 1_000;
    // The services' own budget, as deployed (the harness's default is a patient 3 s,
    // for debug tests).
    config.budget = Budget::SHIPPED;
    // Settle a backlog in large passes (the e2e default of 100 is for small tests).
    config.reconciler.batch_size = 1_000;
    config.server.shutdown_grace_ms = 5_000;
    // Four services and the load on two cores: one Tokio worker each (see
    // `[server] worker_threads` and docs/PERFORMANCE.md).
    config.server.worker_threads = 1;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_per_user_rule_can_refuse_the_load() {
        let c = config(10, DatabaseChoice::Sqlite, None, None);
        assert_eq!(c.accounts.len(), 20);
        // 1,000 tx/s for an hour on a single user stays under the rate limit.
        assert!(u64::from(c.rules.rate_limit_reserves_max) > 3_600_000);
        assert!(c.rules.rate_limit_window_ms <= 24 * 3_600_000);
        assert!(c.rules.daily_inbound_limit_minor > users::OPENING_MINOR);
        assert!(c.rules.transfer_minor_max >= users::AMOUNT_MINOR);
        assert!(c.rules.antifraud_review_threshold_minor > users::AMOUNT_MINOR);
        assert!(c.rules.blocked_users.is_empty());
        // Measured with the budget the services ship with, not the harness's patient one.
        assert_eq!((c.budget.total_ms, c.budget.stale_after_ms()), (200, 2_000));
    }
}
