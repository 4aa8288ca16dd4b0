//! The load's users: `load-00000` .. `load-NNNNN`, each with `ext-<user>` at the external
//! institution (well funded) and `int-<user>` in the balance store (empty). Transfers go
//! to users round-robin, so each user sees one transfer in every `users`: at 1,000 tx/s
//! over 3,000 users that is one reserve per user every 3 s, far below any per-user rule
//! (which the tool's own cluster relaxes anyway, see [`crate::cluster`]).

use banktransfer_e2e::AccountSpec;

/// What each user's external account opens with: 1,000,000.00 USD, i.e. 100 million
/// 1-cent transfers, so no run ever meets INSUFFICIENT_FUNDS.
pub const OPENING_MINOR: i64 = 100_000_000;
/// Every transfer moves one cent.
pub const AMOUNT_MINOR: i64 = 1;
/// Bound on `--users` (each user is two accounts in every service's configuration).
pub const USERS_MAX: u32 = 100_000;

/// `load-00042`.
pub fn user_id(index: u32) -> String {
    format!("load-{index:05}")
}

pub fn external_account(user: &str) -> String {
    format!("ext-{user}")
}

pub fn internal_account(user: &str) -> String {
    format!("int-{user}")
}

/// Which user the `sequence`-th transfer of a run belongs to: round-robin.
pub fn user_of(sequence: u64, users: u32) -> u32 {
    assert!(users > 0, "at least one user");
    u32::try_from(sequence % u64::from(users)).expect("a remainder below a u32 fits")
}

/// The accounts a cluster opens at start-up for `users` users.
pub fn account_specs(users: u32) -> Vec<AccountSpec> {
    let mut specs = Vec::with_capacity(2 * users as usize);
    for index in 0..users {
        let user = user_id(index);
        specs.push(AccountSpec::external(
            &external_account(&user),
            &user,
            OPENING_MINOR,
        ));
        specs.push(AccountSpec::internal(&internal_account(&user), &user, 0));
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_named_and_visited_round_robin() {
        assert_eq!(user_id(42), "load-00042");
        assert_eq!(external_account("load-00042"), "ext-load-00042");
        let seen: Vec<u32> = (0..7).map(|s| user_of(s, 3)).collect();
        assert_eq!(seen, [0, 1, 2, 0, 1, 2, 0]);
        let specs = account_specs(2);
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0].opening_minor, OPENING_MINOR);
        assert_eq!(specs[3].account_id, "int-load-00001");
        assert_eq!(specs[3].opening_minor, 0);
    }
}
