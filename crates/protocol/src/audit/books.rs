//! The books rule: does everything a participant's book holds have an explanation? The
//! legs rule (in the parent module) starts from the coordinator's transfers and so
//! cannot see money that moved without one: a reserve and a confirm sent straight to a
//! participant with a transfer id of the caller's choosing, or a balance edited in the
//! participant's database. This rule starts from the books instead:
//! - every reservation that holds or moved money (HELD, CONFIRMED) must match a transfer
//!   in the coordinator's log: the same transfer id, the transfer's account on that
//!   participant, the same amount and currency ([`unmatched_reservation`]);
//! - every account's balances must follow from its opening balance and its reservations
//!   ([`unexplained_balance`]): on the debit side (the external institution) available =
//!   opening - held - confirmed, on the credit side (our balance store) available =
//!   opening + confirmed, and on both reserved = held, confirmed = confirmed.
//!
//! A theft through the participant's own API leaves a reservation behind that explains
//! the balance, and is caught by the first clause; a balance edited with no reservation
//! is caught by the second.

use std::collections::BTreeMap;
use std::fmt;

use super::ReservationView;
use crate::money::{Currency, Money};
use crate::reservation::{Balance, Side, Terms};
use crate::transfer::Leg;

/// The most a participant lists per page (ListReservations, ListAccounts); a request
/// for more is refused, so a reader sizes its pages within it.
pub const BOOK_PAGE_SIZE_MAX: u32 = 1_000;

/// What the coordinator's log says a transfer moves, as the books rule matches it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoggedTransfer {
    pub transfer_id: String,
    pub external_account_id: String,
    pub internal_account_id: String,
    pub amount: Money,
}

impl LoggedTransfer {
    /// The account the transfer's `leg` reserves on.
    pub fn account_id(&self, leg: Leg) -> &str {
        match leg {
            Leg::External => &self.external_account_id,
            Leg::BalanceStore => &self.internal_account_id,
        }
    }
}

/// One reservation as a participant's book lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BookReservation {
    pub transfer_id: String,
    /// `None` only for a tombstone (CANCELLED before any reserve arrived).
    pub terms: Option<Terms>,
    pub view: ReservationView,
}

impl BookReservation {
    /// Whether it holds or moved money, and so must match a transfer.
    pub fn moves_money(&self) -> bool {
        matches!(
            self.view,
            ReservationView::Held | ReservationView::Confirmed
        )
    }
}

/// One account as a participant's book lists it: its balances and what explains them,
/// read together (in one statement), so that they agree with each other.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountStatement {
    pub account_id: String,
    pub user_id: String,
    pub currency: Currency,
    pub balance: Balance,
    /// `None` for an account opened before opening balances were recorded.
    pub opening_minor: Option<i64>,
    /// Total of the account's HELD reservations in its currency.
    pub reservations_held_minor: i64,
    /// Total of the account's CONFIRMED reservations in its currency.
    pub reservations_confirmed_minor: i64,
}

/// Why a money-moving reservation matches no transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Unmatched {
    /// The log has no transfer with this id.
    NoTransfer,
    /// The transfer's leg at this participant is on another account.
    OtherAccount { logged_account_id: String },
    /// The transfer moves another amount, or another currency.
    OtherAmount { logged_amount: Money },
}

/// A reservation that holds or moved money that no transfer explains.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnmatchedReservation {
    pub leg: Leg,
    pub transfer_id: String,
    pub terms: Terms,
    /// HELD or CONFIRMED.
    pub view: ReservationView,
    pub reason: Unmatched,
}

impl fmt::Display for UnmatchedReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} holds a {} reservation of {} on account {} for transfer {}, ",
            self.leg.name(),
            self.view.as_str(),
            self.terms.amount,
            self.terms.account_id,
            self.transfer_id
        )?;
        match &self.reason {
            Unmatched::NoTransfer => f.write_str("which the transfer log does not have"),
            Unmatched::OtherAccount { logged_account_id } => write!(
                f,
                "whose {} leg is on account {logged_account_id}",
                self.leg.name()
            ),
            Unmatched::OtherAmount { logged_amount } => {
                write!(f, "which moves {logged_amount}")
            }
        }
    }
}

/// Why an account's balances are not explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unexplained {
    /// They differ from those its opening balance and its reservations give.
    BalancesDiffer { expected: Balance },
    /// It opened before opening balances were recorded: nothing explains its balances.
    OpeningUnrecorded,
    /// Its opening balance and reservations add up beyond 64 bits: a corrupt book.
    Overflow,
}

/// An account whose balances its opening balance and reservations do not explain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnexplainedBalance {
    pub leg: Leg,
    pub statement: AccountStatement,
    pub reason: Unexplained,
}

impl fmt::Display for UnexplainedBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.statement;
        write!(
            f,
            "{} account {} holds {} available {}, reserved {}, confirmed {}",
            self.leg.name(),
            s.account_id,
            s.currency,
            s.balance.available_minor,
            s.balance.reserved_minor,
            s.balance.confirmed_minor
        )?;
        let totals = format!(
            "reservations (held {}, confirmed {})",
            s.reservations_held_minor, s.reservations_confirmed_minor
        );
        match (self.reason, s.opening_minor) {
            (Unexplained::BalancesDiffer { expected }, Some(opening)) => write!(
                f,
                "; its opening balance {opening} and {totals} give available {}, reserved {}, \
                 confirmed {}",
                expected.available_minor, expected.reserved_minor, expected.confirmed_minor
            ),
            (Unexplained::OpeningUnrecorded, _) | (_, None) => write!(
                f,
                "; it has no recorded opening balance (opened before they were recorded), so \
                 its {totals} cannot explain it"
            ),
            (Unexplained::Overflow, Some(opening)) => write!(
                f,
                "; its opening balance {opening} and {totals} add up beyond 64 bits: the book \
                 is corrupt"
            ),
        }
    }
}

/// What the books rule finds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Finding {
    UnmatchedReservation(UnmatchedReservation),
    UnexplainedBalance(UnexplainedBalance),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::UnmatchedReservation(finding) => finding.fmt(f),
            Finding::UnexplainedBalance(finding) => finding.fmt(f),
        }
    }
}

/// Which way money moves through `leg`'s accounts.
pub fn side(leg: Leg) -> Side {
    match leg {
        Leg::External => Side::Debit,
        Leg::BalanceStore => Side::Credit,
    }
}

/// The first clause: a reservation on `leg` that holds or moved money must match
/// `logged`, the transfer the log has under its transfer id (`None`: none). Reservations
/// that move no money (CANCELLED, REFUSED, tombstones) always pass.
pub fn unmatched_reservation(
    leg: Leg,
    reservation: &BookReservation,
    logged: Option<&LoggedTransfer>,
) -> Option<UnmatchedReservation> {
    if !reservation.moves_money() {
        return None;
    }
    // A participant records terms with every hold; a reader refuses one without them.
    let terms = reservation.terms.as_ref()?;
    let reason = match logged {
        None => Unmatched::NoTransfer,
        Some(logged) if logged.account_id(leg) != terms.account_id => Unmatched::OtherAccount {
            logged_account_id: logged.account_id(leg).to_owned(),
        },
        Some(logged) if logged.amount != terms.amount => Unmatched::OtherAmount {
            logged_amount: logged.amount,
        },
        Some(_) => return None,
    };
    Some(UnmatchedReservation {
        leg,
        transfer_id: reservation.transfer_id.clone(),
        terms: terms.clone(),
        view: reservation.view,
        reason,
    })
}

/// The balances an account on `side` must hold after opening with `opening_minor`, given
/// the totals of its held and confirmed reservations; `None` past 64 bits.
pub fn explained_balance(
    side: Side,
    opening_minor: i64,
    held_minor: i64,
    confirmed_minor: i64,
) -> Option<Balance> {
    let available_minor = match side {
        Side::Debit => opening_minor
            .checked_sub(held_minor)?
            .checked_sub(confirmed_minor)?,
        Side::Credit => opening_minor.checked_add(confirmed_minor)?,
    };
    Some(Balance {
        available_minor,
        reserved_minor: held_minor,
        confirmed_minor,
    })
}

/// The second clause: an account's balances must be those its opening balance and its
/// reservations give.
pub fn unexplained_balance(leg: Leg, statement: &AccountStatement) -> Option<UnexplainedBalance> {
    let reason = match statement.opening_minor {
        None => Unexplained::OpeningUnrecorded,
        Some(opening) => match explained_balance(
            side(leg),
            opening,
            statement.reservations_held_minor,
            statement.reservations_confirmed_minor,
        ) {
            None => Unexplained::Overflow,
            Some(expected) if expected == statement.balance => return None,
            Some(expected) => Unexplained::BalancesDiffer { expected },
        },
    };
    Some(UnexplainedBalance {
        leg,
        statement: statement.clone(),
        reason,
    })
}

/// Both clauses over `leg`'s book: its reservations against `logged` (the log's
/// transfers by transfer id; it must hold every transfer a money-moving reservation
/// names, if the log has it), and its accounts. Reservations first, in the order given,
/// then accounts.
pub fn book_findings(
    leg: Leg,
    reservations: &[BookReservation],
    accounts: &[AccountStatement],
    logged: &BTreeMap<String, LoggedTransfer>,
) -> Vec<Finding> {
    let unmatched = reservations.iter().filter_map(|reservation| {
        unmatched_reservation(leg, reservation, logged.get(&reservation.transfer_id))
            .map(Finding::UnmatchedReservation)
    });
    let unexplained = accounts.iter().filter_map(|statement| {
        unexplained_balance(leg, statement).map(Finding::UnexplainedBalance)
    });
    unmatched.chain(unexplained).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationView::*;

    fn usd(minor_units: i64) -> Money {
        Money::positive(minor_units, "USD").unwrap()
    }

    fn terms(account_id: &str, amount: Money) -> Terms {
        Terms {
            account_id: account_id.into(),
            user_id: "alice".into(),
            amount,
        }
    }

    fn reservation(
        transfer_id: &str,
        account_id: &str,
        minor: i64,
        view: ReservationView,
    ) -> BookReservation {
        BookReservation {
            transfer_id: transfer_id.into(),
            terms: Some(terms(account_id, usd(minor))),
            view,
        }
    }

    fn logged(transfer_id: &str, minor: i64) -> LoggedTransfer {
        LoggedTransfer {
            transfer_id: transfer_id.into(),
            external_account_id: "ext-alice".into(),
            internal_account_id: "int-alice".into(),
            amount: usd(minor),
        }
    }

    fn log(transfers: &[LoggedTransfer]) -> BTreeMap<String, LoggedTransfer> {
        transfers
            .iter()
            .map(|t| (t.transfer_id.clone(), t.clone()))
            .collect()
    }

    /// An account on `leg` as its book lists it.
    fn statement(
        account_id: &str,
        opening: Option<i64>,
        (available, reserved, confirmed): (i64, i64, i64),
        (held, confirmed_total): (i64, i64),
    ) -> AccountStatement {
        AccountStatement {
            account_id: account_id.into(),
            user_id: "alice".into(),
            currency: Currency::USD,
            balance: Balance {
                available_minor: available,
                reserved_minor: reserved,
                confirmed_minor: confirmed,
            },
            opening_minor: opening,
            reservations_held_minor: held,
            reservations_confirmed_minor: confirmed_total,
        }
    }

    /// The theft of issue 7: Reserve then Confirm sent straight to the balance store, with
    /// a transfer id of the caller's choosing, credit int-alice 500.00 USD. Its book is
    /// consistent (the confirmed reservation explains the credit), so the balance clause
    /// passes; the reservation clause is what catches it.
    #[test]
    fn a_credit_confirmed_with_no_transfer_is_an_unmatched_reservation() {
        let book = [reservation("steal-1", "int-alice", 50_000, Confirmed)];
        let accounts = [statement(
            "int-alice",
            Some(0),
            (50_000, 0, 50_000),
            (0, 50_000),
        )];
        let found = book_findings(Leg::BalanceStore, &book, &accounts, &log(&[]));
        assert_eq!(
            found,
            vec![Finding::UnmatchedReservation(UnmatchedReservation {
                leg: Leg::BalanceStore,
                transfer_id: "steal-1".into(),
                terms: terms("int-alice", usd(50_000)),
                view: Confirmed,
                reason: Unmatched::NoTransfer,
            })]
        );
        assert_eq!(
            found[0].to_string(),
            "the balance store holds a CONFIRMED reservation of USD 50000 minor units on \
             account int-alice for transfer steal-1, which the transfer log does not have"
        );
    }

    /// The same credit written straight into the balance store's database: no
    /// reservation explains it, and the balance clause catches it.
    #[test]
    fn a_balance_edited_with_no_reservation_is_unexplained() {
        let edited = statement("int-alice", Some(0), (50_000, 0, 0), (0, 0));
        let found = unexplained_balance(Leg::BalanceStore, &edited).unwrap();
        assert_eq!(
            found.reason,
            Unexplained::BalancesDiffer {
                expected: Balance::opening(0)
            }
        );
        assert_eq!(
            found.to_string(),
            "balance store account int-alice holds USD available 50000, reserved 0, confirmed \
             0; its opening balance 0 and reservations (held 0, confirmed 0) give available \
             0, reserved 0, confirmed 0"
        );
        // Editing the confirmed total along with it does not help: the reservations do
        // not add up to it.
        let both = statement("int-alice", Some(0), (50_000, 0, 50_000), (0, 0));
        assert!(unexplained_balance(Leg::BalanceStore, &both).is_some());
    }

    #[test]
    fn a_reservation_matches_only_its_transfers_account_and_amount() {
        let transfer = logged("t1", 25_000);
        let on = |leg, account: &str, minor| {
            unmatched_reservation(
                leg,
                &reservation("t1", account, minor, Held),
                Some(&transfer),
            )
            .map(|u| u.reason)
        };
        assert_eq!(on(Leg::External, "ext-alice", 25_000), None);
        assert_eq!(on(Leg::BalanceStore, "int-alice", 25_000), None);
        // Each leg on its own account: the external account is not the balance store's.
        assert_eq!(
            on(Leg::BalanceStore, "ext-alice", 25_000),
            Some(Unmatched::OtherAccount {
                logged_account_id: "int-alice".into()
            })
        );
        assert_eq!(
            on(Leg::External, "int-bob", 25_000),
            Some(Unmatched::OtherAccount {
                logged_account_id: "ext-alice".into()
            })
        );
        assert_eq!(
            on(Leg::BalanceStore, "int-alice", 25_001),
            Some(Unmatched::OtherAmount {
                logged_amount: usd(25_000)
            })
        );
        let in_euros = BookReservation {
            terms: Some(terms("int-alice", Money::positive(25_000, "EUR").unwrap())),
            ..reservation("t1", "int-alice", 1, Confirmed)
        };
        let found = unmatched_reservation(Leg::BalanceStore, &in_euros, Some(&transfer)).unwrap();
        assert_eq!(
            found.to_string(),
            "the balance store holds a CONFIRMED reservation of EUR 25000 minor units on \
             account int-alice for transfer t1, which moves USD 25000 minor units"
        );
    }

    #[test]
    fn reservations_that_move_no_money_need_no_transfer() {
        for view in [Cancelled, Refused] {
            let found = unmatched_reservation(
                Leg::External,
                &reservation("t9", "ext-alice", 10, view),
                None,
            );
            assert_eq!(found, None, "{view:?}");
        }
        let tombstone = BookReservation {
            transfer_id: "t9".into(),
            terms: None,
            view: Cancelled,
        };
        assert_eq!(unmatched_reservation(Leg::External, &tombstone, None), None);
        assert_eq!(
            unmatched_reservation(
                Leg::External,
                &reservation("t9", "ext-alice", 10, Held),
                None
            )
            .map(|u| u.reason),
            Some(Unmatched::NoTransfer)
        );
    }

    #[test]
    fn balances_follow_from_the_opening_balance_and_the_reservations() {
        // External institution: 1000 opened, 300 confirmed out, 200 on hold.
        let external = statement("ext-alice", Some(1_000), (500, 200, 300), (200, 300));
        assert_eq!(unexplained_balance(Leg::External, &external), None);
        // Balance store: 50 opened, 300 credited, 200 pending.
        let internal = statement("int-alice", Some(50), (350, 200, 300), (200, 300));
        assert_eq!(unexplained_balance(Leg::BalanceStore, &internal), None);
        // The same numbers on the other side do not add up.
        assert!(unexplained_balance(Leg::BalanceStore, &external).is_some());
        assert!(unexplained_balance(Leg::External, &internal).is_some());
        // A hold released without its reservation saying so.
        let released = statement("ext-alice", Some(1_000), (700, 0, 300), (200, 300));
        assert_eq!(
            unexplained_balance(Leg::External, &released).map(|u| u.reason),
            Some(Unexplained::BalancesDiffer {
                expected: Balance {
                    available_minor: 500,
                    reserved_minor: 200,
                    confirmed_minor: 300
                }
            })
        );
    }

    #[test]
    fn an_unrecorded_opening_or_an_overflow_explains_nothing() {
        let unknown = statement("int-old", None, (0, 0, 0), (0, 0));
        let found = unexplained_balance(Leg::BalanceStore, &unknown).unwrap();
        assert_eq!(found.reason, Unexplained::OpeningUnrecorded);
        assert!(
            found.to_string().contains("no recorded opening balance"),
            "{found}"
        );
        let huge = statement("int-big", Some(i64::MAX), (i64::MAX, 0, 1), (0, 1));
        let found = unexplained_balance(Leg::BalanceStore, &huge).unwrap();
        assert_eq!(found.reason, Unexplained::Overflow);
        assert!(found.to_string().contains("beyond 64 bits"), "{found}");
        assert_eq!(explained_balance(Side::Debit, 0, i64::MAX, 2), None);
    }

    #[test]
    fn a_book_reports_reservations_then_accounts() {
        let transfers = log(&[logged("t1", 100)]);
        let book = [
            reservation("t1", "int-alice", 100, Confirmed),
            reservation("t2", "int-alice", 7, Held),
            reservation("t3", "int-alice", 9, Cancelled),
        ];
        let accounts = [
            // t1 and t2 explain it.
            statement("int-alice", Some(0), (100, 7, 100), (7, 100)),
            statement("int-bob", Some(0), (1, 0, 0), (0, 0)),
        ];
        let found = book_findings(Leg::BalanceStore, &book, &accounts, &transfers);
        let described: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{described:#?}");
        assert!(
            matches!(&found[0], Finding::UnmatchedReservation(u) if u.transfer_id == "t2"),
            "{described:#?}"
        );
        assert!(
            matches!(&found[1], Finding::UnexplainedBalance(u) if u.statement.account_id == "int-bob"),
            "{described:#?}"
        );
    }
}
