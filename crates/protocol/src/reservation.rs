//! A participant's reservation book: what reserve, confirm and cancel do, as pure
//! functions of what is recorded. Both participants run this code; they differ only in
//! their [`Side`] and in the screening (antifraud, limits) the balance store adds.
//!
//! Rules that keep money safe under retries, reordering and crashes:
//! - one reservation per transfer id, ever; a replay answers with what is recorded;
//! - a cancel for an unknown transfer id records a tombstone, so that a reserve arriving
//!   late (after the coordinator gave up on it) is refused instead of hanging a hold;
//! - confirm and cancel are idempotent; a confirmed reservation cannot be cancelled and a
//!   cancelled one cannot be confirmed.
//!
//! The caller persists the returned reservation and balance atomically (one database
//! transaction) before it answers.

use std::fmt;

use crate::money::Money;

/// Which way money moves through this participant's account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The external institution: a hold takes funds out of `available`; confirm moves
    /// them out for good.
    Debit,
    /// Our balance store: a hold records a pending credit; confirm makes it available.
    Credit,
}

/// An account's balance, in minor units of its currency. None of them is ever negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Balance {
    pub available_minor: i64,
    pub reserved_minor: i64,
    /// Confirmed through the account since it opened (out for debit, in for credit).
    pub confirmed_minor: i64,
}

impl Balance {
    pub fn opening(available_minor: i64) -> Balance {
        assert!(available_minor >= 0, "opening balance must not be negative");
        Balance {
            available_minor,
            reserved_minor: 0,
            confirmed_minor: 0,
        }
    }

    fn assert_valid(&self) {
        assert!(
            self.available_minor >= 0,
            "negative available balance: {self:?}"
        );
        assert!(
            self.reserved_minor >= 0,
            "negative reserved balance: {self:?}"
        );
        assert!(
            self.confirmed_minor >= 0,
            "negative confirmed total: {self:?}"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    InsufficientFunds,
    AccountNotFound,
    AccountNotOwned,
    CurrencyMismatch,
    Antifraud,
    LimitExceeded,
    RateLimited,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::InsufficientFunds,
        RefusalReason::AccountNotFound,
        RefusalReason::AccountNotOwned,
        RefusalReason::CurrencyMismatch,
        RefusalReason::Antifraud,
        RefusalReason::LimitExceeded,
        RefusalReason::RateLimited,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InsufficientFunds => "insufficient_funds",
            RefusalReason::AccountNotFound => "account_not_found",
            RefusalReason::AccountNotOwned => "account_not_owned",
            RefusalReason::CurrencyMismatch => "currency_mismatch",
            RefusalReason::Antifraud => "antifraud",
            RefusalReason::LimitExceeded => "limit_exceeded",
            RefusalReason::RateLimited => "rate_limited",
        }
    }

    pub fn parse(name: &str) -> Option<RefusalReason> {
        RefusalReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a reserve asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Terms {
    pub account_id: String,
    pub user_id: String,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Cancelled,
    Refused(Refusal),
}

impl ReservationStatus {
    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Cancelled => "cancelled",
            ReservationStatus::Refused(_) => "refused",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reservation {
    pub transfer_id: String,
    /// `None` for a tombstone: cancelled before any reserve arrived.
    pub terms: Option<Terms>,
    pub status: ReservationStatus,
}

/// The account as the reservation book needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountView {
    pub account_id: String,
    pub user_id: String,
    pub currency: crate::money::Currency,
    pub balance: Balance,
}

/// What the caller must do to answer a reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Record this new reservation; when `balance` is set, write it in the same
    /// transaction (a hold). A refusal is recorded too, so a replay gets the same answer.
    Record {
        reservation: Reservation,
        balance: Option<Balance>,
    },
    /// Already recorded: answer with it, change nothing.
    Replay(Reservation),
    /// The transfer id is already used for different terms: refuse the call itself.
    Conflict(String),
}

/// Decide a reserve. `screening` is the verdict of the participant's own rules
/// (antifraud, limits, rate limit); the external institution passes `Ok(())`.
pub fn reserve(
    side: Side,
    transfer_id: &str,
    terms: Terms,
    existing: Option<&Reservation>,
    account: Option<&AccountView>,
    screening: Result<(), Refusal>,
) -> ReserveOutcome {
    if let Some(existing) = existing {
        return match &existing.terms {
            // A tombstone: the coordinator already gave up on this transfer.
            None => ReserveOutcome::Replay(existing.clone()),
            Some(recorded) if *recorded == terms => ReserveOutcome::Replay(existing.clone()),
            // The recorded terms are not repeated: they are not the caller's to read.
            Some(_) => ReserveOutcome::Conflict(format!(
                "transfer {transfer_id} already has a reservation with other terms; a retry \
                 must repeat the same terms"
            )),
        };
    }
    let refuse = |refusal: Refusal| ReserveOutcome::Record {
        reservation: Reservation {
            transfer_id: transfer_id.to_owned(),
            terms: Some(terms.clone()),
            status: ReservationStatus::Refused(refusal),
        },
        balance: None,
    };
    let Some(account) = account else {
        return refuse(Refusal::new(
            RefusalReason::AccountNotFound,
            format!("account {} does not exist", terms.account_id),
        ));
    };
    if account.user_id != terms.user_id {
        return refuse(Refusal::new(
            RefusalReason::AccountNotOwned,
            format!(
                "account {} does not belong to user {}",
                account.account_id, terms.user_id
            ),
        ));
    }
    if account.currency != terms.amount.currency() {
        return refuse(Refusal::new(
            RefusalReason::CurrencyMismatch,
            format!(
                "account {} holds {}, the transfer is in {}",
                account.account_id,
                account.currency,
                terms.amount.currency()
            ),
        ));
    }
    if let Err(refusal) = screening {
        return refuse(refusal);
    }
    match hold(side, account.balance, terms.amount.minor_units()) {
        Ok(balance) => ReserveOutcome::Record {
            reservation: Reservation {
                transfer_id: transfer_id.to_owned(),
                terms: Some(terms),
                status: ReservationStatus::Held,
            },
            balance: Some(balance),
        },
        Err(refusal) => refuse(refusal),
    }
}

/// What the caller must do to answer a confirm or a cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Record the reservation's new status and write the account's new balance, in one
    /// transaction.
    Apply {
        reservation: Reservation,
        balance: Balance,
    },
    /// Record a new reservation that moves no money (a tombstone).
    Record(Reservation),
    /// Nothing to change: answer with what is recorded.
    Replay(Reservation),
    /// Not allowed in this state: refuse the call (FAILED_PRECONDITION).
    Reject(String),
}

/// Confirm a hold. `balance` is the account's balance (absent for a tombstone).
pub fn confirm(
    side: Side,
    transfer_id: &str,
    existing: Option<&Reservation>,
    balance: Option<Balance>,
) -> SettleOutcome {
    let Some(existing) = existing else {
        return SettleOutcome::Reject(format!(
            "transfer {transfer_id} has no reservation here: reserve before confirming"
        ));
    };
    match &existing.status {
        ReservationStatus::Held => {
            let terms = existing
                .terms
                .as_ref()
                .expect("a held reservation has terms");
            let balance = balance.expect("a held reservation's account exists");
            SettleOutcome::Apply {
                reservation: Reservation {
                    status: ReservationStatus::Confirmed,
                    ..existing.clone()
                },
                balance: apply_confirm(side, balance, terms.amount.minor_units()),
            }
        }
        ReservationStatus::Confirmed => SettleOutcome::Replay(existing.clone()),
        ReservationStatus::Cancelled => SettleOutcome::Reject(format!(
            "transfer {transfer_id} was cancelled here; it can no longer be confirmed"
        )),
        ReservationStatus::Refused(refusal) => SettleOutcome::Reject(format!(
            "transfer {transfer_id} was refused here ({}); there is nothing to confirm",
            refusal.reason.as_str()
        )),
    }
}

/// Cancel a hold, or leave a tombstone when no reserve arrived yet.
pub fn cancel(
    side: Side,
    transfer_id: &str,
    existing: Option<&Reservation>,
    balance: Option<Balance>,
) -> SettleOutcome {
    let Some(existing) = existing else {
        return SettleOutcome::Record(Reservation {
            transfer_id: transfer_id.to_owned(),
            terms: None,
            status: ReservationStatus::Cancelled,
        });
    };
    match &existing.status {
        ReservationStatus::Held => {
            let terms = existing
                .terms
                .as_ref()
                .expect("a held reservation has terms");
            let balance = balance.expect("a held reservation's account exists");
            SettleOutcome::Apply {
                reservation: Reservation {
                    status: ReservationStatus::Cancelled,
                    ..existing.clone()
                },
                balance: release(side, balance, terms.amount.minor_units()),
            }
        }
        // Nothing is held for a refusal, and a cancel changes nothing there.
        ReservationStatus::Cancelled | ReservationStatus::Refused(_) => {
            SettleOutcome::Replay(existing.clone())
        }
        ReservationStatus::Confirmed => SettleOutcome::Reject(format!(
            "transfer {transfer_id} is already confirmed here; it can no longer be cancelled"
        )),
    }
}

fn hold(side: Side, balance: Balance, amount_minor: i64) -> Result<Balance, Refusal> {
    assert!(amount_minor > 0, "hold of a non-positive amount");
    balance.assert_valid();
    let new = match side {
        Side::Debit => {
            if balance.available_minor < amount_minor {
                return Err(Refusal::new(
                    RefusalReason::InsufficientFunds,
                    // The balance itself is not told: a refusal travels back to the
                    // client, and balances are not the client's to read.
                    format!("insufficient funds for {amount_minor} minor units"),
                ));
            }
            Balance {
                available_minor: balance.available_minor - amount_minor,
                reserved_minor: balance
                    .reserved_minor
                    .checked_add(amount_minor)
                    .expect("held funds came out of available, so they fit"),
                ..balance
            }
        }
        Side::Credit => {
            // Once confirmed, the credit lands in available (and in the confirmed total):
            // refuse now anything that could overflow then.
            let fits = balance
                .available_minor
                .checked_add(balance.reserved_minor)
                .and_then(|v| v.checked_add(amount_minor))
                .is_some()
                && balance
                    .confirmed_minor
                    .checked_add(balance.reserved_minor + amount_minor)
                    .is_some();
            if !fits {
                return Err(Refusal::new(
                    RefusalReason::LimitExceeded,
                    "the credit would overflow the account's balance",
                ));
            }
            Balance {
                reserved_minor: balance.reserved_minor + amount_minor,
                ..balance
            }
        }
    };
    new.assert_valid();
    Ok(new)
}

fn apply_confirm(side: Side, balance: Balance, amount_minor: i64) -> Balance {
    assert!(
        balance.reserved_minor >= amount_minor,
        "confirming {amount_minor} with only {} reserved",
        balance.reserved_minor
    );
    let reserved_minor = balance.reserved_minor - amount_minor;
    let confirmed_minor = balance
        .confirmed_minor
        .checked_add(amount_minor)
        .expect("confirmed total overflow was refused at reserve");
    let new = match side {
        Side::Debit => Balance {
            reserved_minor,
            confirmed_minor,
            ..balance
        },
        Side::Credit => Balance {
            available_minor: balance
                .available_minor
                .checked_add(amount_minor)
                .expect("available overflow was refused at reserve"),
            reserved_minor,
            confirmed_minor,
        },
    };
    new.assert_valid();
    new
}

fn release(side: Side, balance: Balance, amount_minor: i64) -> Balance {
    assert!(
        balance.reserved_minor >= amount_minor,
        "releasing {amount_minor} with only {} reserved",
        balance.reserved_minor
    );
    let new = match side {
        Side::Debit => Balance {
            available_minor: balance.available_minor + amount_minor,
            reserved_minor: balance.reserved_minor - amount_minor,
            ..balance
        },
        Side::Credit => Balance {
            reserved_minor: balance.reserved_minor - amount_minor,
            ..balance
        },
    };
    new.assert_valid();
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn usd(n: i64) -> Money {
        Money::positive(n, "USD").unwrap()
    }

    fn terms(n: i64) -> Terms {
        Terms {
            account_id: "acc".into(),
            user_id: "alice".into(),
            amount: usd(n),
        }
    }

    fn account(available: i64) -> AccountView {
        AccountView {
            account_id: "acc".into(),
            user_id: "alice".into(),
            currency: Currency::USD,
            balance: Balance::opening(available),
        }
    }

    fn recorded(outcome: ReserveOutcome) -> (Reservation, Option<Balance>) {
        match outcome {
            ReserveOutcome::Record {
                reservation,
                balance,
            } => (reservation, balance),
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn debit_hold_confirm_moves_money_out_and_conserves_it() {
        let acc = account(1_000);
        let (res, bal) = recorded(reserve(
            Side::Debit,
            "t1",
            terms(300),
            None,
            Some(&acc),
            Ok(()),
        ));
        let bal = bal.unwrap();
        assert_eq!(res.status, ReservationStatus::Held);
        assert_eq!((bal.available_minor, bal.reserved_minor), (700, 300));
        let SettleOutcome::Apply {
            reservation,
            balance,
        } = confirm(Side::Debit, "t1", Some(&res), Some(bal))
        else {
            panic!()
        };
        assert_eq!(reservation.status, ReservationStatus::Confirmed);
        assert_eq!(
            balance,
            Balance {
                available_minor: 700,
                reserved_minor: 0,
                confirmed_minor: 300
            }
        );
        assert_eq!(
            balance.available_minor + balance.reserved_minor + balance.confirmed_minor,
            1_000
        );
    }

    #[test]
    fn credit_hold_is_pending_until_confirmed() {
        let acc = account(0);
        let (res, bal) = recorded(reserve(
            Side::Credit,
            "t1",
            terms(300),
            None,
            Some(&acc),
            Ok(()),
        ));
        let bal = bal.unwrap();
        assert_eq!((bal.available_minor, bal.reserved_minor), (0, 300));
        let SettleOutcome::Apply { balance, .. } =
            confirm(Side::Credit, "t1", Some(&res), Some(bal))
        else {
            panic!()
        };
        assert_eq!(
            balance,
            Balance {
                available_minor: 300,
                reserved_minor: 0,
                confirmed_minor: 300
            }
        );
        let SettleOutcome::Apply { balance, .. } =
            cancel(Side::Credit, "t1", Some(&res), Some(bal))
        else {
            panic!()
        };
        assert_eq!(balance, Balance::opening(0));
    }

    #[test]
    fn insufficient_funds_is_a_recorded_refusal_that_holds_nothing() {
        let (res, bal) = recorded(reserve(
            Side::Debit,
            "t1",
            terms(1_001),
            None,
            Some(&account(1_000)),
            Ok(()),
        ));
        assert!(bal.is_none());
        assert!(matches!(
            res.status,
            ReservationStatus::Refused(Refusal {
                reason: RefusalReason::InsufficientFunds,
                ..
            })
        ));
        // The replay gets the same refusal even if funds arrived meanwhile.
        assert_eq!(
            reserve(
                Side::Debit,
                "t1",
                terms(1_001),
                Some(&res),
                Some(&account(5_000)),
                Ok(())
            ),
            ReserveOutcome::Replay(res.clone())
        );
        assert_eq!(
            cancel(Side::Debit, "t1", Some(&res), None),
            SettleOutcome::Replay(res.clone())
        );
        let SettleOutcome::Reject(why) = confirm(Side::Debit, "t1", Some(&res), None) else {
            panic!("a refused reservation cannot be confirmed")
        };
        assert!(why.contains("insufficient_funds"), "{why}");
        // Neither the refusal nor the rejection tells the account's balance.
        let ReservationStatus::Refused(refusal) = &res.status else {
            panic!()
        };
        for told in [refusal.message.as_str(), why.as_str()] {
            assert!(!told.contains("1000"), "the balance leaked: {told}");
        }
    }

    #[test]
    fn account_checks_come_before_screening_and_funds() {
        let refusal_of = |outcome| match recorded(outcome).0.status {
            ReservationStatus::Refused(r) => r.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refusal_of(reserve(Side::Debit, "t", terms(1), None, None, Ok(()))),
            RefusalReason::AccountNotFound
        );
        let mut bob = account(10);
        bob.user_id = "bob".into();
        assert_eq!(
            refusal_of(reserve(
                Side::Debit,
                "t",
                terms(1),
                None,
                Some(&bob),
                Ok(())
            )),
            RefusalReason::AccountNotOwned
        );
        let mut eur = account(10);
        eur.currency = Currency::parse("EUR").unwrap();
        assert_eq!(
            refusal_of(reserve(
                Side::Debit,
                "t",
                terms(1),
                None,
                Some(&eur),
                Ok(())
            )),
            RefusalReason::CurrencyMismatch
        );
        let antifraud = Err(Refusal::new(RefusalReason::Antifraud, "rule"));
        assert_eq!(
            refusal_of(reserve(
                Side::Credit,
                "t",
                terms(1),
                None,
                Some(&account(0)),
                antifraud
            )),
            RefusalReason::Antifraud
        );
    }

    #[test]
    fn cancel_before_reserve_leaves_a_tombstone_that_refuses_the_late_reserve() {
        let SettleOutcome::Record(tombstone) = cancel(Side::Debit, "t1", None, None) else {
            panic!()
        };
        assert_eq!(tombstone.status, ReservationStatus::Cancelled);
        assert!(tombstone.terms.is_none());
        assert_eq!(
            reserve(
                Side::Debit,
                "t1",
                terms(10),
                Some(&tombstone),
                Some(&account(100)),
                Ok(())
            ),
            ReserveOutcome::Replay(tombstone.clone())
        );
        assert!(matches!(
            confirm(Side::Debit, "t1", Some(&tombstone), None),
            SettleOutcome::Reject(_)
        ));
    }

    #[test]
    fn replays_are_idempotent_and_different_terms_conflict() {
        let acc = account(1_000);
        let (res, bal) = recorded(reserve(
            Side::Debit,
            "t1",
            terms(10),
            None,
            Some(&acc),
            Ok(()),
        ));
        assert_eq!(
            reserve(Side::Debit, "t1", terms(10), Some(&res), Some(&acc), Ok(())),
            ReserveOutcome::Replay(res.clone())
        );
        let ReserveOutcome::Conflict(why) =
            reserve(Side::Debit, "t1", terms(11), Some(&res), Some(&acc), Ok(()))
        else {
            panic!("other terms under the same transfer id conflict")
        };
        // The recorded terms (10 on "acc") are not told to whoever sent other ones.
        assert!(!why.contains("10") && !why.contains("acc"), "{why}");
        let SettleOutcome::Apply {
            reservation: confirmed,
            ..
        } = confirm(Side::Debit, "t1", Some(&res), bal)
        else {
            panic!()
        };
        assert_eq!(
            confirm(Side::Debit, "t1", Some(&confirmed), bal),
            SettleOutcome::Replay(confirmed.clone())
        );
        assert!(matches!(
            cancel(Side::Debit, "t1", Some(&confirmed), bal),
            SettleOutcome::Reject(_)
        ));
        // A replayed reserve after confirm reports the confirmed reservation.
        assert_eq!(
            reserve(
                Side::Debit,
                "t1",
                terms(10),
                Some(&confirmed),
                Some(&acc),
                Ok(())
            ),
            ReserveOutcome::Replay(confirmed)
        );
    }

    #[test]
    fn a_credit_that_could_overflow_is_refused() {
        let mut acc = account(0);
        acc.balance.available_minor = i64::MAX - 5;
        let (res, _) = recorded(reserve(
            Side::Credit,
            "t",
            terms(10),
            None,
            Some(&acc),
            Ok(()),
        ));
        assert!(matches!(
            res.status,
            ReservationStatus::Refused(Refusal {
                reason: RefusalReason::LimitExceeded,
                ..
            })
        ));
    }

    #[test]
    fn refusal_names_round_trip() {
        for r in RefusalReason::ALL {
            assert_eq!(RefusalReason::parse(r.as_str()), Some(r));
        }
    }
}
