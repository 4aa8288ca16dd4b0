//! ListReservations and ListAccounts answers as the audit reads them, each entry checked
//! and converted once, here. An entry the audit cannot read (an unspecified status,
//! partial terms, an invalid id, amount or currency) fails the whole call: an audit that
//! skipped it would report a book clean without having read it.

use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1::{
    self as reservation_pb, ListAccountsResponse, ListReservationsResponse, ReservationStatus,
};
use banktransfer_protocol::audit::{AccountStatement, BookReservation, ReservationView};
use banktransfer_protocol::ids::check_id;
use banktransfer_protocol::money::{Currency, Money};
use banktransfer_protocol::reservation::{Balance, Terms};

use super::grpc::status_text;
use super::{CallError, Page};

pub fn reservations_page(
    result: Result<ListReservationsResponse, tonic::Status>,
) -> Result<Page<BookReservation>, CallError> {
    let response = result.map_err(|status| failed("list_reservations", &status))?;
    Ok(Page {
        entries: response
            .reservations
            .into_iter()
            .map(book_reservation)
            .collect::<Result<_, _>>()?,
        next_page_token: response.next_page_token,
    })
}

pub fn accounts_page(
    result: Result<ListAccountsResponse, tonic::Status>,
) -> Result<Page<AccountStatement>, CallError> {
    let response = result.map_err(|status| failed("list_accounts", &status))?;
    Ok(Page {
        entries: response
            .accounts
            .into_iter()
            .map(account_statement)
            .collect::<Result<_, _>>()?,
        next_page_token: response.next_page_token,
    })
}

fn failed(operation: &str, status: &tonic::Status) -> CallError {
    CallError(format!(
        "{operation} failed: {:?}: {}",
        status.code(),
        status_text(status)
    ))
}

fn book_reservation(listed: reservation_pb::Reservation) -> Result<BookReservation, CallError> {
    let transfer_id = listed.transfer_id.clone();
    let unreadable =
        |what: String| CallError(format!("listed reservation {transfer_id:?}: {what}"));
    check_id("transfer_id", &transfer_id).map_err(unreadable)?;
    let view = match listed.status() {
        ReservationStatus::Held => ReservationView::Held,
        ReservationStatus::Confirmed => ReservationView::Confirmed,
        ReservationStatus::Cancelled => ReservationView::Cancelled,
        ReservationStatus::Refused => ReservationView::Refused,
        ReservationStatus::Unspecified => return Err(unreadable("unspecified status".into())),
    };
    let terms = match (listed.account_id.is_empty(), listed.amount) {
        // A tombstone: a cancel that arrived before any reserve.
        (true, None) if view == ReservationView::Cancelled => None,
        (false, Some(amount)) => {
            check_id("account_id", &listed.account_id).map_err(unreadable)?;
            Some(Terms {
                account_id: listed.account_id,
                user_id: listed.user_id,
                amount: money(&amount).map_err(unreadable)?,
            })
        }
        _ => return Err(unreadable("its account or amount is missing".into())),
    };
    Ok(BookReservation {
        transfer_id,
        terms,
        view,
    })
}

fn money(amount: &money_pb::Money) -> Result<Money, String> {
    Money::positive(amount.minor_units, &amount.currency).map_err(|e| format!("amount: {e}"))
}

fn account_statement(
    listed: reservation_pb::AccountStatement,
) -> Result<AccountStatement, CallError> {
    let Some(account) = listed.account else {
        return Err(CallError(
            "listed account statement without its account".into(),
        ));
    };
    let account_id = account.account_id.clone();
    let unreadable = |what: String| CallError(format!("listed account {account_id:?}: {what}"));
    check_id("account_id", &account_id).map_err(unreadable)?;
    let currency = Currency::parse(&account.currency).map_err(|e| unreadable(e.to_string()))?;
    Ok(AccountStatement {
        account_id: account.account_id,
        user_id: account.user_id,
        currency,
        // As listed, negative or not: the audit's rule judges the numbers.
        balance: Balance {
            available_minor: account.available_minor_units,
            reserved_minor: account.reserved_minor_units,
            confirmed_minor: account.confirmed_minor_units,
        },
        opening_minor: listed.opening_minor_units,
        reservations_held_minor: listed.reservations_held_minor_units,
        reservations_confirmed_minor: listed.reservations_confirmed_minor_units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(
        status: ReservationStatus,
        account_id: &str,
        minor_units: Option<i64>,
    ) -> reservation_pb::Reservation {
        reservation_pb::Reservation {
            transfer_id: "t1".into(),
            account_id: account_id.into(),
            user_id: "alice".into(),
            amount: minor_units.map(|minor_units| money_pb::Money {
                minor_units,
                currency: "USD".into(),
            }),
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn listed_reservations_keep_their_terms_and_tombstones_have_none() {
        let held = book_reservation(listed(ReservationStatus::Held, "int-1", Some(250))).unwrap();
        assert_eq!(held.view, ReservationView::Held);
        let terms = held.terms.unwrap();
        assert_eq!(
            (terms.account_id.as_str(), terms.amount),
            ("int-1", Money::positive(250, "USD").unwrap())
        );
        let tombstone = book_reservation(listed(ReservationStatus::Cancelled, "", None)).unwrap();
        assert_eq!(tombstone.terms, None);
    }

    #[test]
    fn unreadable_reservations_fail_the_page() {
        for bad in [
            listed(ReservationStatus::Unspecified, "int-1", Some(250)),
            // Only a cancel leaves no terms.
            listed(ReservationStatus::Held, "", None),
            listed(ReservationStatus::Confirmed, "int-1", None),
            listed(ReservationStatus::Held, "int-1", Some(0)),
            reservation_pb::Reservation {
                transfer_id: String::new(),
                ..listed(ReservationStatus::Held, "int-1", Some(1))
            },
        ] {
            let page = reservations_page(Ok(ListReservationsResponse {
                reservations: vec![bad.clone()],
                next_page_token: String::new(),
            }));
            assert!(page.is_err(), "{bad:?}");
        }
        let down = reservations_page(Err(tonic::Status::unavailable("down"))).unwrap_err();
        assert!(down.0.contains("Unavailable"), "{down}");
    }

    #[test]
    fn account_statements_keep_every_number_and_an_unrecorded_opening() {
        let statement = |currency: &str, opening| reservation_pb::AccountStatement {
            account: Some(reservation_pb::Account {
                account_id: "int-1".into(),
                user_id: "alice".into(),
                currency: currency.into(),
                available_minor_units: 5,
                reserved_minor_units: 2,
                confirmed_minor_units: 3,
            }),
            opening_minor_units: opening,
            reservations_held_minor_units: 2,
            reservations_confirmed_minor_units: 3,
        };
        let page = accounts_page(Ok(ListAccountsResponse {
            accounts: vec![statement("USD", Some(2)), statement("USD", None)],
            next_page_token: "next".into(),
        }))
        .unwrap();
        assert_eq!(page.next_page_token, "next");
        let read = &page.entries[0];
        assert_eq!(read.currency, Currency::USD);
        assert_eq!(read.opening_minor, Some(2));
        assert_eq!(
            (
                read.balance.available_minor,
                read.reservations_held_minor,
                read.reservations_confirmed_minor
            ),
            (5, 2, 3)
        );
        assert_eq!(page.entries[1].opening_minor, None);
        assert!(account_statement(statement("usd", Some(0))).is_err());
        assert!(account_statement(reservation_pb::AccountStatement::default()).is_err());
    }
}
