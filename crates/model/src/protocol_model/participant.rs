//! A participant handling one request: what `participant/src/store/mod.rs` and
//! `participant/src/grpc/mod.rs` do around the pure reservation book, minus the SQL.
//! The decisions are `banktransfer_protocol::reservation::{reserve, confirm, cancel}`.

use banktransfer_protocol::money::{Currency, Money};
use banktransfer_protocol::reservation::{
    self, AccountView, Refusal, RefusalReason, Reservation, ReservationStatus, ReserveOutcome,
    SettleOutcome, Side, Terms,
};
use banktransfer_protocol::transfer::Leg;

use super::world::{Answer, Book, Op};
use super::{AMOUNT_MINOR, Mutation};

pub const USER_ID: &str = "alice";

/// The External leg debits the user's account at the other bank; the Internal leg
/// credits her account in our balance store.
pub fn side(leg: Leg) -> Side {
    match leg {
        Leg::External => Side::Debit,
        Leg::BalanceStore => Side::Credit,
    }
}

pub fn account_id(leg: Leg) -> &'static str {
    match leg {
        Leg::External => "ext",
        Leg::BalanceStore => "int",
    }
}

pub fn transfer_id(transfer: u8) -> String {
    format!("T{transfer}")
}

fn amount() -> Money {
    Money::positive(AMOUNT_MINOR, "USD").expect("the model's amount is valid")
}

/// Handles `op` for `transfer` on this participant's book, persisting what the pure code
/// says to persist (atomically: one step), and returns the answer on the wire.
pub fn handle(
    mutation: Mutation,
    book: &mut Book,
    leg: Leg,
    transfer: u8,
    op: Op,
    antifraud_refuses: bool,
) -> Answer {
    let id = transfer_id(transfer);
    let slot = usize::from(transfer);
    match op {
        Op::Reserve => {
            let existing = book.reservations[slot].as_ref();
            // Screening runs only for a reserve with nothing recorded yet.
            let screening = match existing {
                None if antifraud_refuses => Err(Refusal::new(
                    RefusalReason::Antifraud,
                    "antifraud: transfer held for review",
                )),
                _ => Ok(()),
            };
            let terms = Terms {
                account_id: account_id(leg).to_owned(),
                user_id: USER_ID.to_owned(),
                amount: amount(),
            };
            let account = AccountView {
                account_id: account_id(leg).to_owned(),
                user_id: USER_ID.to_owned(),
                currency: Currency::USD,
                balance: book.balance,
            };
            match reservation::reserve(side(leg), &id, terms, existing, Some(&account), screening) {
                ReserveOutcome::Record {
                    reservation,
                    balance,
                } => {
                    if let Some(balance) = balance {
                        book.balance = balance;
                    }
                    let answer = reserve_answer(&reservation);
                    book.reservations[slot] = Some(reservation);
                    answer
                }
                ReserveOutcome::Replay(reservation) => reserve_answer(&reservation),
                // ALREADY_EXISTS: the coordinator sees an error, hence Unknown.
                ReserveOutcome::Conflict(why) => Answer::Unknown(why),
            }
        }
        Op::Confirm | Op::Cancel => {
            let existing = book.reservations[slot].clone();
            let balance = existing
                .as_ref()
                .and_then(|r| r.terms.as_ref())
                .map(|_| book.balance);
            let outcome = match (op, &existing) {
                (Op::Confirm, Some(confirmed))
                    if mutation == Mutation::NonIdempotentConfirm
                        && confirmed.status == ReservationStatus::Confirmed =>
                {
                    // The mutant: a replayed confirm is applied again, as if still held.
                    let as_if_held = Reservation {
                        status: ReservationStatus::Held,
                        ..confirmed.clone()
                    };
                    reservation::confirm(side(leg), &id, Some(&as_if_held), balance)
                }
                (Op::Confirm, _) => {
                    reservation::confirm(side(leg), &id, existing.as_ref(), balance)
                }
                _ => reservation::cancel(side(leg), &id, existing.as_ref(), balance),
            };
            let ended = match outcome {
                SettleOutcome::Apply {
                    reservation,
                    balance,
                } => {
                    book.balance = balance;
                    let status = reservation.status.clone();
                    book.reservations[slot] = Some(reservation);
                    Some(status)
                }
                SettleOutcome::Record(tombstone) => {
                    let status = tombstone.status.clone();
                    // The mutant forgets the tombstone but answers as if it had kept it.
                    if mutation != Mutation::NoTombstone {
                        book.reservations[slot] = Some(tombstone);
                    }
                    Some(status)
                }
                SettleOutcome::Replay(reservation) => Some(reservation.status),
                // FAILED_PRECONDITION.
                SettleOutcome::Reject(_) => None,
            };
            // `participants/grpc.rs`'s `settled`: the call counts only when the
            // reservation ends as asked.
            Answer::Settled(match (op, ended) {
                (Op::Confirm, Some(status)) => status == ReservationStatus::Confirmed,
                (_, Some(status)) => matches!(
                    status,
                    ReservationStatus::Cancelled | ReservationStatus::Refused(_)
                ),
                (_, None) => false,
            })
        }
    }
}

/// `participants/grpc.rs`'s `reserve_reply`: HELD or CONFIRMED is a hold; REFUSED and
/// CANCELLED (a tombstone) hold nothing.
fn reserve_answer(reservation: &Reservation) -> Answer {
    match &reservation.status {
        ReservationStatus::Held | ReservationStatus::Confirmed => Answer::Held,
        ReservationStatus::Refused(refusal) => Answer::Refused(refusal.message.clone()),
        ReservationStatus::Cancelled => {
            Answer::Refused("cancelled before the reserve arrived".into())
        }
    }
}
