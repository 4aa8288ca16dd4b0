//! The client's own deadline, from the `grpc-timeout` request header: a client that will
//! stop waiting sooner than our budget gets an answer before it does.

use tonic::metadata::MetadataMap;

/// The header's value in whole milliseconds (rounded down: answering a little early is
/// safe, late is not). None when absent or malformed (the server's budget applies).
pub fn client_timeout_ms(metadata: &MetadataMap) -> Option<u64> {
    parse_ms(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// `TimeoutValue TimeoutUnit`: at most 8 ASCII digits, then one of H M S m u n.
fn parse_ms(value: &str) -> Option<u64> {
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => amount * 3_600_000,
        "M" => amount * 60_000,
        "S" => amount * 1_000,
        "m" => amount,
        "u" => amount / 1_000,
        "n" => amount / 1_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_converts_to_milliseconds() {
        assert_eq!(parse_ms("1H"), Some(3_600_000));
        assert_eq!(parse_ms("2M"), Some(120_000));
        assert_eq!(parse_ms("3S"), Some(3_000));
        assert_eq!(parse_ms("150m"), Some(150));
        assert_eq!(parse_ms("2500u"), Some(2));
        assert_eq!(parse_ms("99999999n"), Some(99));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in ["", "m", "10", "10x", "-5m", "123456789m", "1.5S"] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_the_header_tonic_clients_send() {
        let mut request = tonic::Request::new(());
        request.set_timeout(std::time::Duration::from_millis(120));
        assert_eq!(client_timeout_ms(request.metadata()), Some(120));
        assert_eq!(client_timeout_ms(&MetadataMap::new()), None);
    }
}
