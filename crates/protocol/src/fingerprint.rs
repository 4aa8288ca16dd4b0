//! The fingerprint of a transfer request: two requests under the same idempotency key are
//! "the same request" exactly when their fingerprints are equal.

use sha2::{Digest, Sha256};

use crate::money::Money;

/// SHA-256 over the request's fields, each length-prefixed so that no two different
/// requests can encode to the same bytes ("ab"+"c" versus "a"+"bc").
pub fn request_fingerprint(
    user_id: &str,
    external_account_id: &str,
    internal_account_id: &str,
    amount: Money,
) -> String {
    let mut hasher = Sha256::new();
    let minor_units = amount.minor_units().to_string();
    for field in [
        user_id,
        external_account_id,
        internal_account_id,
        minor_units.as_str(),
        amount.currency().as_str(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_requests_share_a_fingerprint_and_any_change_breaks_it() {
        let usd = |n| Money::positive(n, "USD").unwrap();
        let base = request_fingerprint("alice", "ext-a", "int-a", usd(100));
        assert_eq!(
            base,
            request_fingerprint("alice", "ext-a", "int-a", usd(100))
        );
        assert_ne!(
            base,
            request_fingerprint("alice", "ext-a", "int-a", usd(101))
        );
        assert_ne!(base, request_fingerprint("bob", "ext-a", "int-a", usd(100)));
        assert_ne!(
            base,
            request_fingerprint(
                "alice",
                "ext-a",
                "int-a",
                Money::positive(100, "EUR").unwrap()
            )
        );
        // Field boundaries matter.
        assert_ne!(
            request_fingerprint("ab", "c", "int", usd(1)),
            request_fingerprint("a", "bc", "int", usd(1))
        );
    }
}
