//! What an identifier (transfer, account, user, idempotency key) may be: 1 to
//! [`ID_BYTES_MAX`] bytes of printable ASCII without spaces (`!` to `~`). Checked once at
//! every boundary (the gateway's and the participants' gRPC requests, seed accounts from
//! the configuration), before any log line, database call or remote call, so that no
//! control character, NUL or terminal escape ever reaches a log, a database or a reply.
//! The error names the field and the rule, and never echoes the value.

/// Longest accepted id, in bytes. UUIDs (36) and typical external references fit with
/// room to spare.
pub const ID_BYTES_MAX: usize = 128;

/// Checks `value` as the id in `field`; the message starts with `field:` and says what
/// to fix.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field}: is required; set a non-empty id"));
    }
    if value.len() > ID_BYTES_MAX {
        return Err(format!(
            "{field}: is {} bytes long; at most {ID_BYTES_MAX} are allowed",
            value.len()
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{field}: contains a space, a control or a non-ASCII character; use printable \
             ASCII without spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_bounded_in_bytes_and_printable_ascii() {
        assert!(check_id("transfer_id", "t-1").is_ok());
        assert!(check_id("transfer_id", "01a22b75-2630-7405-a074-b593b78ac07a").is_ok());
        assert!(check_id("transfer_id", &"x".repeat(ID_BYTES_MAX)).is_ok());
        let empty = check_id("account_id", "").unwrap_err();
        assert!(empty.starts_with("account_id: is required"), "{empty}");
        let long = check_id("user_id", &"x".repeat(ID_BYTES_MAX + 1)).unwrap_err();
        assert!(
            long.starts_with("user_id:") && long.contains("at most 128"),
            "{long}"
        );
        // 64 two-byte characters are 128 bytes, but not ASCII.
        assert!(check_id("user_id", &"é".repeat(64)).is_err());
        for bad in [
            "\u{0}",
            "alice\u{0}",
            "   ",
            "\t",
            "alice\n",
            "a b",
            "\u{1b}[31m",
            "é",
        ] {
            let err = check_id("user_id", bad).unwrap_err();
            assert!(err.starts_with("user_id: contains"), "{bad:?}: {err}");
            assert!(!err.contains(bad), "the value is not echoed: {err:?}");
        }
    }
}
