//! The books rule's findings as the Audit reply carries them: each typed, with what was
//! read and a sentence for an operator.

use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reconciler::v1 as pb;
use banktransfer_api::reservation::v1 as reservation_pb;
use banktransfer_protocol::audit::{
    AccountStatement, Finding, ReservationView, Unexplained, UnexplainedBalance, Unmatched,
    UnmatchedReservation,
};
use banktransfer_protocol::money::Money;
use banktransfer_protocol::transfer::Leg;

/// The findings, each in its own list of the reply.
pub fn replies(
    findings: &[Finding],
) -> (Vec<pb::UnmatchedReservation>, Vec<pb::UnexplainedBalance>) {
    let mut unmatched = Vec::new();
    let mut unexplained = Vec::new();
    for finding in findings {
        match finding {
            Finding::UnmatchedReservation(found) => unmatched.push(unmatched_reservation(found)),
            Finding::UnexplainedBalance(found) => unexplained.push(unexplained_balance(found)),
        }
    }
    (unmatched, unexplained)
}

fn participant(leg: Leg) -> pb::Participant {
    match leg {
        Leg::External => pb::Participant::ExternalInstitution,
        Leg::BalanceStore => pb::Participant::BalanceStore,
    }
}

fn unmatched_reservation(found: &UnmatchedReservation) -> pb::UnmatchedReservation {
    let status = match found.view {
        ReservationView::Held => reservation_pb::ReservationStatus::Held,
        ReservationView::Confirmed => reservation_pb::ReservationStatus::Confirmed,
        other => unreachable!("only reservations that move money are unmatched: {other:?}"),
    };
    let (reason, transfer_account_id, transfer_amount) = match &found.reason {
        Unmatched::NoTransfer => (pb::UnmatchedReason::NoTransfer, String::new(), None),
        Unmatched::OtherAccount { logged_account_id } => (
            pb::UnmatchedReason::OtherAccount,
            logged_account_id.clone(),
            None,
        ),
        Unmatched::OtherAmount { logged_amount } => (
            pb::UnmatchedReason::OtherAmount,
            String::new(),
            Some(money(logged_amount)),
        ),
    };
    pb::UnmatchedReservation {
        participant: participant(found.leg).into(),
        reservation: Some(reservation_pb::Reservation {
            transfer_id: found.transfer_id.clone(),
            account_id: found.terms.account_id.clone(),
            user_id: found.terms.user_id.clone(),
            amount: Some(money(&found.terms.amount)),
            status: status.into(),
            ..Default::default()
        }),
        reason: reason.into(),
        transfer_account_id,
        transfer_amount,
        description: found.to_string(),
    }
}

fn unexplained_balance(found: &UnexplainedBalance) -> pb::UnexplainedBalance {
    let (reason, expected) = match found.reason {
        Unexplained::BalancesDiffer { expected } => {
            (pb::UnexplainedReason::BalancesDiffer, Some(expected))
        }
        Unexplained::OpeningUnrecorded => (pb::UnexplainedReason::OpeningUnrecorded, None),
        Unexplained::Overflow => (pb::UnexplainedReason::Overflow, None),
    };
    let expected = expected.unwrap_or_default();
    pb::UnexplainedBalance {
        participant: participant(found.leg).into(),
        statement: Some(statement(&found.statement)),
        reason: reason.into(),
        expected_available_minor_units: expected.available_minor,
        expected_reserved_minor_units: expected.reserved_minor,
        expected_confirmed_minor_units: expected.confirmed_minor,
        description: found.to_string(),
    }
}

fn statement(statement: &AccountStatement) -> reservation_pb::AccountStatement {
    reservation_pb::AccountStatement {
        account: Some(reservation_pb::Account {
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

#[cfg(test)]
mod tests {
    use banktransfer_protocol::money::Currency;
    use banktransfer_protocol::reservation::{Balance, Terms};

    use super::*;

    fn usd(minor_units: i64) -> Money {
        Money::positive(minor_units, "USD").unwrap()
    }

    #[test]
    fn an_unmatched_reservation_carries_what_was_held_and_why() {
        let found = Finding::UnmatchedReservation(UnmatchedReservation {
            leg: Leg::BalanceStore,
            transfer_id: "steal-1".into(),
            terms: Terms {
                account_id: "int-alice".into(),
                user_id: "alice".into(),
                amount: usd(50_000),
            },
            view: ReservationView::Confirmed,
            reason: Unmatched::OtherAmount {
                logged_amount: usd(1),
            },
        });
        let (unmatched, unexplained) = replies(std::slice::from_ref(&found));
        assert!(unexplained.is_empty());
        let reply = &unmatched[0];
        assert_eq!(reply.participant(), pb::Participant::BalanceStore);
        assert_eq!(reply.reason(), pb::UnmatchedReason::OtherAmount);
        let reservation = reply.reservation.as_ref().unwrap();
        assert_eq!(
            reservation.status(),
            reservation_pb::ReservationStatus::Confirmed
        );
        assert_eq!(
            (
                reservation.transfer_id.as_str(),
                reservation.account_id.as_str()
            ),
            ("steal-1", "int-alice")
        );
        assert_eq!(reservation.amount.as_ref().unwrap().minor_units, 50_000);
        assert_eq!(reply.transfer_amount.as_ref().unwrap().minor_units, 1);
        assert_eq!(reply.description, found.to_string());
    }

    #[test]
    fn an_unexplained_balance_carries_the_statement_and_the_expected_balances() {
        let found = Finding::UnexplainedBalance(UnexplainedBalance {
            leg: Leg::External,
            statement: AccountStatement {
                account_id: "ext-alice".into(),
                user_id: "alice".into(),
                currency: Currency::USD,
                balance: Balance::opening(900),
                opening_minor: Some(1_000),
                reservations_held_minor: 0,
                reservations_confirmed_minor: 0,
            },
            reason: Unexplained::BalancesDiffer {
                expected: Balance::opening(1_000),
            },
        });
        let (unmatched, unexplained) = replies(&[found]);
        assert!(unmatched.is_empty());
        let reply = &unexplained[0];
        assert_eq!(reply.participant(), pb::Participant::ExternalInstitution);
        assert_eq!(reply.reason(), pb::UnexplainedReason::BalancesDiffer);
        assert_eq!(reply.expected_available_minor_units, 1_000);
        let statement = reply.statement.as_ref().unwrap();
        assert_eq!(statement.opening_minor_units, Some(1_000));
        assert_eq!(
            statement.account.as_ref().unwrap().available_minor_units,
            900
        );
    }
}
