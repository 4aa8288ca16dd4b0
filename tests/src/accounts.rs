//! The accounts a cluster opens at start-up (through each participant's `[[accounts]]`
//! configuration), and amount formatting for messages.

/// Which participant holds an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// At the external institution: the source of transfers.
    External,
    /// In our balance store: the destination.
    BalanceStore,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    pub side: Side,
    pub account_id: String,
    pub user_id: String,
    pub currency: String,
    pub opening_minor: i64,
}

impl AccountSpec {
    pub fn external(account_id: &str, user_id: &str, opening_minor: i64) -> AccountSpec {
        AccountSpec::new(Side::External, account_id, user_id, opening_minor)
    }

    pub fn internal(account_id: &str, user_id: &str, opening_minor: i64) -> AccountSpec {
        AccountSpec::new(Side::BalanceStore, account_id, user_id, opening_minor)
    }

    fn new(side: Side, account_id: &str, user_id: &str, opening_minor: i64) -> AccountSpec {
        AccountSpec {
            side,
            account_id: account_id.to_owned(),
            user_id: user_id.to_owned(),
            currency: "USD".to_owned(),
            opening_minor,
        }
    }
}

/// 1000.00 USD at the external institution for alice and bob.
pub const DEMO_EXTERNAL_BALANCE: i64 = 100_000;
/// 100,000.00 USD for carol: enough for antifraud, limits and the latency run.
pub const CAROL_EXTERNAL_BALANCE: i64 = 10_000_000;

/// alice, bob, carol (well funded) and mallory (on the blocked list by default), each
/// with `ext-<user>` at the institution and an empty `int-<user>` with us.
pub fn demo_accounts() -> Vec<AccountSpec> {
    let mut accounts = Vec::new();
    for (user, balance) in [
        ("alice", DEMO_EXTERNAL_BALANCE),
        ("bob", DEMO_EXTERNAL_BALANCE),
        ("carol", CAROL_EXTERNAL_BALANCE),
        ("mallory", DEMO_EXTERNAL_BALANCE),
    ] {
        accounts.push(AccountSpec::external(&format!("ext-{user}"), user, balance));
        accounts.push(AccountSpec::internal(&format!("int-{user}"), user, 0));
    }
    accounts
}

/// `12345` -> `"123.45"`: two decimals, as every demo account is in USD.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units() {
        assert_eq!(format_minor(0), "0.00");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(25_000), "250.00");
        assert_eq!(format_minor(-101), "-1.01");
    }

    #[test]
    fn demo_accounts_pair_every_user() {
        let accounts = demo_accounts();
        let alice: Vec<_> = accounts.iter().filter(|a| a.user_id == "alice").collect();
        assert_eq!(alice.len(), 2);
        assert_eq!(alice[0].account_id, "ext-alice");
        assert_eq!(alice[0].opening_minor, 100_000);
        assert_eq!(alice[1].account_id, "int-alice");
        assert_eq!(alice[1].opening_minor, 0);
    }
}
