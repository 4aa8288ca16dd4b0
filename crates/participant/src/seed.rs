//! Opening the configured `[[accounts]]` at start-up. Idempotent, so a restart with the
//! same configuration changes nothing: an existing account keeps its balance (the opening
//! balance applies only when the account is created). An id that exists with another
//! owner or currency stops the start-up, since the configuration and the data disagree.

use anyhow::{Context, bail};

use crate::book::{OpenOutcome, ReservationBook};
use crate::config::SeedAccount;

pub async fn open_accounts<B: ReservationBook>(
    book: &B,
    accounts: &[SeedAccount],
    now_ms: u64,
) -> anyhow::Result<()> {
    for seed in accounts {
        let account = seed.new_account()?;
        let outcome = book
            .open_account(account, now_ms)
            .await
            .with_context(|| format!("opening seed account {}", seed.account_id))?;
        match outcome {
            OpenOutcome::Opened(account) => tracing::info!(
                account_id = %account.account_id,
                available_minor = account.balance.available_minor,
                "seed account opened"
            ),
            OpenOutcome::Existing(account) => tracing::info!(
                account_id = %account.account_id,
                "seed account already open"
            ),
            OpenOutcome::Conflict(why) => bail!("seed account {}: {why}", seed.account_id),
        }
    }
    Ok(())
}
