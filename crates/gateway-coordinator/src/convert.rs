//! The API boundary: protobuf requests become validated domain values (INVALID_ARGUMENT
//! naming the field otherwise), and transfer records become protobuf transfers. Nothing
//! past this module sees a protobuf type of the public API.

use banktransfer_api::gateway::v1::{
    self as gateway_pb, ApproveTransferRequest, GetTransferRequest, TransferStatus,
    get_transfer_request,
};
use banktransfer_api::money::v1 as money_pb;
use banktransfer_protocol::fingerprint::request_fingerprint;
use banktransfer_protocol::ids::check_id;
use banktransfer_protocol::money::{Money, MoneyError};
use banktransfer_protocol::transfer::ClientStatus;

use coordinator::store::TransferRecord;

/// A validated ApproveTransfer request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub idempotency_key: String,
    pub user_id: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    pub amount: Money,
}

impl TransferRequest {
    /// Two requests under one idempotency key are the same request exactly when this is
    /// equal. The key itself is not part of it.
    pub fn fingerprint(&self) -> String {
        request_fingerprint(
            &self.user_id,
            &self.external_account_id,
            &self.internal_account_id,
            self.amount,
        )
    }
}

impl TransferRequest {
    /// Checks every field: ids (`banktransfer_protocol::ids`), the currency (ISO 4217) and
    /// the amount (positive, at most `amount_minor_max`).
    pub fn parse(
        request: ApproveTransferRequest,
        amount_minor_max: i64,
    ) -> Result<TransferRequest, tonic::Status> {
        let idempotency_key = id("idempotency_key", request.idempotency_key)?;
        let user_id = id("user_id", request.user_id)?;
        let external_account_id = id("external_account_id", request.external_account_id)?;
        let internal_account_id = id("internal_account_id", request.internal_account_id)?;
        let money_pb::Money {
            minor_units,
            currency,
        } = request
            .amount
            .ok_or_else(|| invalid("amount", "is required"))?;
        let amount =
            Money::transfer(minor_units, &currency, amount_minor_max).map_err(|e| money(&e))?;
        Ok(TransferRequest {
            idempotency_key,
            user_id,
            external_account_id,
            internal_account_id,
            amount,
        })
    }
}

/// How GetTransfer finds a transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    TransferId(String),
    IdempotencyKey {
        user_id: String,
        idempotency_key: String,
    },
}

impl TryFrom<GetTransferRequest> for Lookup {
    type Error = tonic::Status;

    fn try_from(request: GetTransferRequest) -> Result<Self, Self::Error> {
        match request.lookup {
            None => Err(invalid(
                "lookup",
                "is required: give transfer_id or idempotency_key",
            )),
            Some(get_transfer_request::Lookup::TransferId(transfer_id)) => {
                Ok(Lookup::TransferId(id("transfer_id", transfer_id)?))
            }
            Some(get_transfer_request::Lookup::IdempotencyKey(key)) => Ok(Lookup::IdempotencyKey {
                user_id: id("idempotency_key.user_id", key.user_id)?,
                idempotency_key: id("idempotency_key.idempotency_key", key.idempotency_key)?,
            }),
        }
    }
}

pub fn transfer_to_proto(record: &TransferRecord) -> gateway_pb::Transfer {
    let status = record.state.client_status();
    gateway_pb::Transfer {
        transfer_id: record.transfer_id.clone(),
        idempotency_key: record.idempotency_key.clone(),
        user_id: record.user_id.clone(),
        external_account_id: record.external_account_id.clone(),
        internal_account_id: record.internal_account_id.clone(),
        amount: Some(money_pb::Money {
            minor_units: record.amount.minor_units(),
            currency: record.amount.currency().as_str().to_owned(),
        }),
        status: status_to_proto(status) as i32,
        failure_reason: match status {
            ClientStatus::Failed => record.failure_reason.clone().unwrap_or_default(),
            ClientStatus::Processing | ClientStatus::Succeeded => String::new(),
        },
        created_at_ms: ms_to_proto(record.created_at_ms),
        updated_at_ms: ms_to_proto(record.updated_at_ms),
    }
}

pub fn status_to_proto(status: ClientStatus) -> TransferStatus {
    match status {
        ClientStatus::Processing => TransferStatus::Processing,
        ClientStatus::Succeeded => TransferStatus::Succeeded,
        ClientStatus::Failed => TransferStatus::Failed,
    }
}

fn ms_to_proto(ms: u64) -> i64 {
    i64::try_from(ms).expect("epoch milliseconds fit in i64")
}

fn id(field: &str, value: String) -> Result<String, tonic::Status> {
    check_id(field, &value).map_err(tonic::Status::invalid_argument)?;
    Ok(value)
}

fn money(err: &MoneyError) -> tonic::Status {
    let field = if err.is_about_currency() {
        "amount.currency"
    } else {
        "amount.minor_units"
    };
    invalid(field, &err.to_string())
}

fn invalid(field: &str, what: &str) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {what}"))
}

#[cfg(test)]
mod tests {
    use banktransfer_protocol::transfer::RecordedState;

    use super::*;

    fn request() -> ApproveTransferRequest {
        ApproveTransferRequest {
            idempotency_key: "key-1".into(),
            user_id: "alice".into(),
            external_account_id: "ext-a".into(),
            internal_account_id: "int-a".into(),
            amount: Some(money_pb::Money {
                minor_units: 500,
                currency: "USD".into(),
            }),
        }
    }

    const MAX: i64 = 1_000_000;

    fn parse(request: ApproveTransferRequest) -> Result<TransferRequest, tonic::Status> {
        TransferRequest::parse(request, MAX)
    }

    fn rejected(request: ApproveTransferRequest) -> String {
        let status = parse(request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn a_valid_request_converts_and_fingerprints_without_the_key() {
        let parsed = parse(request()).unwrap();
        assert_eq!(parsed.amount, Money::positive(500, "USD").unwrap());
        let other_key = parse(ApproveTransferRequest {
            idempotency_key: "key-2".into(),
            ..request()
        })
        .unwrap();
        assert_eq!(parsed.fingerprint(), other_key.fingerprint());
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let cases: Vec<(ApproveTransferRequest, &str)> = vec![
            (
                ApproveTransferRequest {
                    idempotency_key: String::new(),
                    ..request()
                },
                "idempotency_key",
            ),
            (
                ApproveTransferRequest {
                    user_id: String::new(),
                    ..request()
                },
                "user_id",
            ),
            (
                ApproveTransferRequest {
                    external_account_id: String::new(),
                    ..request()
                },
                "external_account_id",
            ),
            (
                ApproveTransferRequest {
                    internal_account_id: "x".repeat(129),
                    ..request()
                },
                "internal_account_id",
            ),
            (
                ApproveTransferRequest {
                    amount: None,
                    ..request()
                },
                "amount",
            ),
            (
                ApproveTransferRequest {
                    amount: Some(money_pb::Money {
                        minor_units: 0,
                        currency: "USD".into(),
                    }),
                    ..request()
                },
                "amount.minor_units",
            ),
            (
                ApproveTransferRequest {
                    amount: Some(money_pb::Money {
                        minor_units: -3,
                        currency: "USD".into(),
                    }),
                    ..request()
                },
                "amount.minor_units",
            ),
            (
                ApproveTransferRequest {
                    amount: Some(money_pb::Money {
                        minor_units: 5,
                        currency: "usd".into(),
                    }),
                    ..request()
                },
                "amount.currency",
            ),
        ];
        for (bad, field) in cases {
            let message = rejected(bad);
            assert!(
                message.starts_with(&format!("{field}:")),
                "{field}: {message}"
            );
        }
        // Exactly the limit is fine; bytes of printable ASCII are counted, and nothing
        // else is an id: NUL, control characters, spaces, escapes, non-ASCII.
        assert!(
            parse(ApproveTransferRequest {
                user_id: "x".repeat(128),
                ..request()
            })
            .is_ok()
        );
        for bad in [
            "é".repeat(64),
            "bob\u{0}".into(),
            "alice\n".into(),
            "\u{1b}[2J".into(),
        ] {
            let status = parse(ApproveTransferRequest {
                user_id: bad.clone(),
                ..request()
            })
            .unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(status.message().starts_with("user_id:"), "{status:?}");
            assert!(!status.message().contains(&bad), "not echoed: {status:?}");
        }
    }

    fn with_amount(minor_units: i64, currency: &str) -> ApproveTransferRequest {
        ApproveTransferRequest {
            amount: Some(money_pb::Money {
                minor_units,
                currency: currency.into(),
            }),
            ..request()
        }
    }

    #[test]
    fn amounts_are_bounded_by_the_configured_maximum() {
        assert_eq!(
            parse(with_amount(MAX, "USD")).unwrap().amount.minor_units(),
            MAX
        );
        for above in [MAX + 1, i64::MAX] {
            let message = rejected(with_amount(above, "USD"));
            assert!(
                message
                    .starts_with("amount.minor_units: amount must be at most 1000000 minor units"),
                "{message}"
            );
        }
    }

    #[test]
    fn currencies_are_iso_4217_and_never_echoed_raw() {
        assert!(parse(with_amount(5, "EUR")).is_ok());
        let unknown = rejected(with_amount(5, "ABC"));
        assert!(
            unknown.starts_with("amount.currency: \"ABC\" is not an ISO 4217 currency"),
            "{unknown}"
        );
        assert!(rejected(with_amount(5, "XXX")).starts_with("amount.currency:"));
        for malformed in ["A".repeat(100_000), "US\nD".into(), "\u{1b}[2J".into()] {
            let message = rejected(with_amount(5, &malformed));
            assert!(message.starts_with("amount.currency:"), "{message}");
            assert!(!message.contains(&malformed), "echoed: {message:?}");
            assert!(message.len() < 200, "{message}");
        }
    }

    #[test]
    fn lookups_need_a_non_empty_key() {
        let none = Lookup::try_from(GetTransferRequest { lookup: None }).unwrap_err();
        assert_eq!(none.code(), tonic::Code::InvalidArgument);
        let empty = Lookup::try_from(GetTransferRequest {
            lookup: Some(get_transfer_request::Lookup::TransferId(String::new())),
        })
        .unwrap_err();
        assert!(empty.message().starts_with("transfer_id:"));
        let by_key = Lookup::try_from(GetTransferRequest {
            lookup: Some(get_transfer_request::Lookup::IdempotencyKey(
                gateway_pb::IdempotencyKeyLookup {
                    user_id: "alice".into(),
                    idempotency_key: String::new(),
                },
            )),
        })
        .unwrap_err();
        assert!(
            by_key
                .message()
                .starts_with("idempotency_key.idempotency_key:")
        );
    }

    fn record(state: RecordedState, failure_reason: Option<&str>) -> TransferRecord {
        TransferRecord {
            transfer_id: "t-1".into(),
            user_id: "alice".into(),
            idempotency_key: "key-1".into(),
            fingerprint: "f".into(),
            external_account_id: "ext-a".into(),
            internal_account_id: "int-a".into(),
            amount: Money::positive(500, "USD").unwrap(),
            state,
            failure_reason: failure_reason.map(str::to_owned),
            created_at_ms: 1_000,
            decided_at_ms: None,
            updated_at_ms: 1_050,
            attempts: 0,
            next_attempt_at_ms: 1_200,
            lease_owner: None,
            lease_until_ms: None,
            trace_context: None,
        }
    }

    #[test]
    fn recorded_states_map_to_client_statuses() {
        let cases = [
            (RecordedState::Started, TransferStatus::Processing),
            (RecordedState::Committed, TransferStatus::Processing),
            (RecordedState::Succeeded, TransferStatus::Succeeded),
            (RecordedState::Aborted, TransferStatus::Failed),
            (RecordedState::Failed, TransferStatus::Failed),
        ];
        for (state, status) in cases {
            let transfer = transfer_to_proto(&record(state, Some("refused")));
            assert_eq!(transfer.status, status as i32, "{state:?}");
            let reason_shown = status == TransferStatus::Failed;
            assert_eq!(
                transfer.failure_reason == "refused",
                reason_shown,
                "{state:?}"
            );
        }
        let transfer = transfer_to_proto(&record(RecordedState::Succeeded, None));
        assert_eq!(transfer.transfer_id, "t-1");
        assert_eq!(transfer.amount.unwrap().minor_units, 500);
        assert_eq!(
            (transfer.created_at_ms, transfer.updated_at_ms),
            (1_000, 1_050)
        );
    }
}
