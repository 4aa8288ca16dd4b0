//! What an identifier (transfer, account, user) may be: non-empty and bounded, so that a
//! client cannot store unbounded keys. Checked once at the boundary (gRPC requests and
//! seed accounts from the configuration).

/// Longest accepted id, in characters. UUIDs (36) and typical external references fit
/// with room to spare.
pub const ID_LEN_MAX: usize = 128;

/// Checks `value` as the id in `field`; the error names the field and what to fix.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} is empty: set it to a non-empty id"));
    }
    let len = value.chars().count();
    if len > ID_LEN_MAX {
        return Err(format!(
            "{field} is {len} characters long: use at most {ID_LEN_MAX}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_and_bounded() {
        assert!(check_id("transfer_id", "t-1").is_ok());
        assert!(check_id("transfer_id", &"x".repeat(ID_LEN_MAX)).is_ok());
        let empty = check_id("account_id", "").unwrap_err();
        assert!(empty.contains("account_id is empty"), "{empty}");
        let long = check_id("user_id", &"x".repeat(ID_LEN_MAX + 1)).unwrap_err();
        assert!(
            long.contains("user_id") && long.contains("at most 128"),
            "{long}"
        );
    }
}
