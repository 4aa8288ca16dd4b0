//! The identities BankTransfer recognises. A service's certificate carries the URI SAN
//! `spiffe://banktransfer/<service>`; the participants serve Reserve/Confirm/Cancel/
//! GetReservation only to the coordinator's identities (gateway and reconciler); the
//! operator API is for certificates carrying [`OPERATOR`].

/// The SPIFFE trust domain of every identity here.
pub const TRUST_DOMAIN: &str = "banktransfer";

pub const GATEWAY_COORDINATOR: &str = "spiffe://banktransfer/gateway-coordinator";
pub const MOCK_EXTERNAL_INSTITUTION: &str = "spiffe://banktransfer/mock-external-institution";
pub const INTERNAL_BALANCE_STORE: &str = "spiffe://banktransfer/internal-balance-store";
pub const RECONCILER: &str = "spiffe://banktransfer/reconciler";
/// A human operator (reconciler's operator API), by client certificate.
pub const OPERATOR: &str = "spiffe://banktransfer/operator";

/// The service names: each gets `<name>.pem` / `<name>-key.pem` and the DNS SAN `<name>`.
pub const SERVICE_NAMES: [&str; 4] = [
    "gateway-coordinator",
    "mock-external-institution",
    "internal-balance-store",
    "reconciler",
];

/// The name of the operator's client certificate files (`operator.pem`).
pub const OPERATOR_NAME: &str = "operator";

/// Who issues user tokens (`iss`), unless configured otherwise.
pub const TOKEN_ISSUER_DEFAULT: &str = "https://auth.banktransfer.local";
/// Whom user tokens are for (`aud`), unless configured otherwise.
pub const TOKEN_AUDIENCE_DEFAULT: &str = "banktransfer-gateway";

/// `spiffe://banktransfer/<name>`.
pub fn spiffe_id_for(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_follow_the_naming_rule() {
        let constants = [
            GATEWAY_COORDINATOR,
            MOCK_EXTERNAL_INSTITUTION,
            INTERNAL_BALANCE_STORE,
            RECONCILER,
        ];
        for (name, constant) in SERVICE_NAMES.iter().zip(constants) {
            assert_eq!(spiffe_id_for(name), constant);
        }
        assert_eq!(spiffe_id_for(OPERATOR_NAME), OPERATOR);
    }
}
