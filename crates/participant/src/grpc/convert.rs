//! Protobuf <-> domain, once, at the boundary. Requests parse into the protocol's types or
//! fail INVALID_ARGUMENT with a message that names the field and says what to fix;
//! domain values render into the reply messages.

use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::money::{Money, MoneyError};
use banktransfer_protocol::reservation::{
    AccountView, RefusalReason, Reservation, ReservationStatus, Terms,
};
use tonic::Status;

use crate::book::NewAccount;
use banktransfer_protocol::ids::check_id;

/// An id from a request, checked.
pub fn id(field: &str, value: String) -> Result<String, Status> {
    check_id(field, &value).map_err(Status::invalid_argument)?;
    Ok(value)
}

/// A reserve: its transfer id and the terms it asks for.
pub fn reserve_request(request: pb::ReserveRequest) -> Result<(String, Terms), Status> {
    let transfer_id = id("transfer_id", request.transfer_id)?;
    let account_id = id("account_id", request.account_id)?;
    let user_id = id("user_id", request.user_id)?;
    let amount = request.amount.ok_or_else(|| {
        Status::invalid_argument(
            "amount is missing: set amount.minor_units (positive) and amount.currency (e.g. \"USD\")",
        )
    })?;
    let amount = Money::positive(amount.minor_units, &amount.currency)
        .map_err(|e| money_status("amount", &e))?;
    Ok((
        transfer_id,
        Terms {
            account_id,
            user_id,
            amount,
        },
    ))
}

/// An OpenAccount's fields (either participant's own request message).
pub fn new_account(
    account_id: String,
    user_id: String,
    opening_balance: Option<money_pb::Money>,
) -> Result<NewAccount, Status> {
    let account_id = id("account_id", account_id)?;
    let user_id = id("user_id", user_id)?;
    let opening = opening_balance.ok_or_else(|| {
        Status::invalid_argument(
            "opening_balance is missing: set opening_balance.minor_units (zero or more) and \
             opening_balance.currency (the account's currency, e.g. \"USD\")",
        )
    })?;
    let opening_balance = Money::non_negative(opening.minor_units, &opening.currency)
        .map_err(|e| money_status("opening_balance", &e))?;
    Ok(NewAccount {
        account_id,
        user_id,
        opening_balance,
    })
}

fn money_status(field: &str, err: &MoneyError) -> Status {
    let part = if err.is_about_currency() {
        "currency"
    } else {
        "minor_units"
    };
    Status::invalid_argument(format!("{field}.{part}: {err}"))
}

pub fn reservation(reservation: &Reservation) -> pb::Reservation {
    let terms = reservation.terms.as_ref();
    let (status, refusal_reason, refusal_message) = match &reservation.status {
        ReservationStatus::Held => (pb::ReservationStatus::Held, None, String::new()),
        ReservationStatus::Confirmed => (pb::ReservationStatus::Confirmed, None, String::new()),
        ReservationStatus::Cancelled => (pb::ReservationStatus::Cancelled, None, String::new()),
        ReservationStatus::Refused(refusal) => (
            pb::ReservationStatus::Refused,
            Some(refusal.reason),
            refusal.message.clone(),
        ),
    };
    pb::Reservation {
        transfer_id: reservation.transfer_id.clone(),
        account_id: terms.map(|t| t.account_id.clone()).unwrap_or_default(),
        user_id: terms.map(|t| t.user_id.clone()).unwrap_or_default(),
        amount: terms.map(|t| money(&t.amount)),
        status: status.into(),
        refusal_reason: refusal_reason
            .map_or(pb::RefusalReason::Unspecified, refusal_reason_pb)
            .into(),
        refusal_message,
    }
}

pub fn account(account: &AccountView) -> pb::Account {
    pb::Account {
        account_id: account.account_id.clone(),
        user_id: account.user_id.clone(),
        currency: account.currency.as_str().to_owned(),
        available_minor_units: account.balance.available_minor,
        reserved_minor_units: account.balance.reserved_minor,
        confirmed_minor_units: account.balance.confirmed_minor,
    }
}

/// An account with what explains its balances, for ListAccounts.
pub fn account_statement(statement: &AccountStatement) -> pb::AccountStatement {
    pb::AccountStatement {
        account: Some(pb::Account {
            account_id: statement.account_id.clone(),
            user_id: statement.user_id.clone(),
            currency: statement.currency.as_str().to_owned(),
            available_minor_units: statement.balance.available_minor,
            reserved_minor_units: statement.balance.reserved_minor,
            confirmed_minor_units: statement.balance.confirmed_minor,
        }),
        opening_minor_units: statement.opening_minor,
        reservations_held_minor_units: statement.reservations_held_minor,
        reservations_confirmed_minor_units: statement.reservations_confirmed_minor,
    }
}

fn money(amount: &Money) -> money_pb::Money {
    money_pb::Money {
        minor_units: amount.minor_units(),
        currency: amount.currency().as_str().to_owned(),
    }
}

fn refusal_reason_pb(reason: RefusalReason) -> pb::RefusalReason {
    match reason {
        RefusalReason::InsufficientFunds => pb::RefusalReason::InsufficientFunds,
        RefusalReason::AccountNotFound => pb::RefusalReason::AccountNotFound,
        RefusalReason::AccountNotOwned => pb::RefusalReason::AccountNotOwned,
        RefusalReason::CurrencyMismatch => pb::RefusalReason::CurrencyMismatch,
        RefusalReason::Antifraud => pb::RefusalReason::Antifraud,
        RefusalReason::LimitExceeded => pb::RefusalReason::LimitExceeded,
        RefusalReason::RateLimited => pb::RefusalReason::RateLimited,
    }
}

#[cfg(test)]
mod tests {
    use banktransfer_protocol::money::Currency;
    use banktransfer_protocol::reservation::{Balance, Refusal};
    use tonic::Code;

    use super::*;

    fn reserve(amount: Option<(i64, &str)>) -> pb::ReserveRequest {
        pb::ReserveRequest {
            transfer_id: "t1".into(),
            account_id: "acc".into(),
            user_id: "alice".into(),
            amount: amount.map(|(minor_units, currency)| money_pb::Money {
                minor_units,
                currency: currency.into(),
            }),
        }
    }

    fn invalid_message(result: Result<impl std::fmt::Debug, Status>) -> String {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    }

    #[test]
    fn a_valid_reserve_parses_into_terms() {
        let (transfer_id, terms) = reserve_request(reserve(Some((250, "USD")))).unwrap();
        assert_eq!(transfer_id, "t1");
        assert_eq!(terms.account_id, "acc");
        assert_eq!(terms.user_id, "alice");
        assert_eq!(terms.amount, Money::positive(250, "USD").unwrap());
    }

    #[test]
    fn invalid_reserves_name_the_field_to_fix() {
        let cases: [(pb::ReserveRequest, &str); 8] = [
            (
                pb::ReserveRequest {
                    transfer_id: String::new(),
                    ..reserve(Some((1, "USD")))
                },
                "transfer_id: is required",
            ),
            (
                pb::ReserveRequest {
                    account_id: String::new(),
                    ..reserve(Some((1, "USD")))
                },
                "account_id: is required",
            ),
            (
                pb::ReserveRequest {
                    user_id: String::new(),
                    ..reserve(Some((1, "USD")))
                },
                "user_id: is required",
            ),
            (
                pb::ReserveRequest {
                    transfer_id: "t".repeat(129),
                    ..reserve(Some((1, "USD")))
                },
                "transfer_id: is 129 bytes",
            ),
            (
                pb::ReserveRequest {
                    transfer_id: "t\u{0}".into(),
                    ..reserve(Some((1, "USD")))
                },
                "transfer_id: contains a space, a control or a non-ASCII character",
            ),
            (reserve(None), "amount is missing"),
            (reserve(Some((0, "USD"))), "amount.minor_units"),
            (reserve(Some((10, "usd"))), "amount.currency"),
        ];
        for (request, expected) in cases {
            let message = invalid_message(reserve_request(request));
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let negative = invalid_message(reserve_request(reserve(Some((-5, "USD")))));
        assert!(negative.contains("positive"), "{negative}");
    }

    #[test]
    fn currencies_are_iso_4217_wherever_money_arrives() {
        let unknown = invalid_message(reserve_request(reserve(Some((10, "ABC")))));
        assert!(
            unknown.starts_with("amount.currency: \"ABC\" is not an ISO 4217 currency"),
            "{unknown}"
        );
        let huge = "U".repeat(1_000_000);
        let malformed = invalid_message(reserve_request(reserve(Some((10, &huge)))));
        assert!(malformed.starts_with("amount.currency:"), "{malformed}");
        assert!(
            malformed.len() < 200,
            "the value is not echoed: {malformed}"
        );
        let opening = Some(money_pb::Money {
            minor_units: 0,
            currency: "XXX".into(),
        });
        let no_currency = invalid_message(new_account("acc".into(), "alice".into(), opening));
        assert!(
            no_currency.starts_with("opening_balance.currency:"),
            "{no_currency}"
        );
    }

    #[test]
    fn open_account_accepts_zero_and_refuses_negative() {
        let opening = |minor_units| {
            Some(money_pb::Money {
                minor_units,
                currency: "USD".into(),
            })
        };
        let open = |opening_balance| new_account("acc".into(), "alice".into(), opening_balance);
        let account = open(opening(0)).unwrap();
        assert_eq!(account.opening_balance.minor_units(), 0);
        let message = invalid_message(open(opening(-1)));
        assert!(message.contains("opening_balance.minor_units"), "{message}");
        assert!(invalid_message(open(None)).contains("opening_balance"));
        let no_user = new_account("acc".into(), String::new(), opening(0));
        assert!(invalid_message(no_user).contains("user_id: is required"));
    }

    #[test]
    fn reservations_render_with_status_and_refusal() {
        let terms = Terms {
            account_id: "acc".into(),
            user_id: "alice".into(),
            amount: Money::positive(250, "USD").unwrap(),
        };
        let refused = Reservation {
            transfer_id: "t1".into(),
            terms: Some(terms),
            status: ReservationStatus::Refused(Refusal::new(
                RefusalReason::RateLimited,
                "slow down",
            )),
        };
        let message = reservation(&refused);
        assert_eq!(message.status(), pb::ReservationStatus::Refused);
        assert_eq!(message.refusal_reason(), pb::RefusalReason::RateLimited);
        assert_eq!(message.refusal_message, "slow down");
        assert_eq!(message.account_id, "acc");
        assert_eq!(message.amount.unwrap().minor_units, 250);

        let tombstone = Reservation {
            transfer_id: "t2".into(),
            terms: None,
            status: ReservationStatus::Cancelled,
        };
        let message = reservation(&tombstone);
        assert_eq!(message.status(), pb::ReservationStatus::Cancelled);
        assert_eq!(message.refusal_reason(), pb::RefusalReason::Unspecified);
        assert!(message.amount.is_none() && message.account_id.is_empty());
    }

    #[test]
    fn every_refusal_reason_has_its_own_proto_value() {
        let mut seen: Vec<i32> = RefusalReason::ALL
            .into_iter()
            .map(|r| refusal_reason_pb(r) as i32)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), RefusalReason::ALL.len());
        assert!(!seen.contains(&(pb::RefusalReason::Unspecified as i32)));
    }

    #[test]
    fn accounts_render_their_balances() {
        let view = AccountView {
            account_id: "acc".into(),
            user_id: "alice".into(),
            currency: Currency::USD,
            balance: Balance {
                available_minor: 1,
                reserved_minor: 2,
                confirmed_minor: 3,
            },
        };
        let message = account(&view);
        assert_eq!(message.currency, "USD");
        assert_eq!(
            (
                message.available_minor_units,
                message.reserved_minor_units,
                message.confirmed_minor_units
            ),
            (1, 2, 3)
        );
    }
}
