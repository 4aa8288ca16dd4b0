//! Scripted participants for the coordinator's tests (the gateway's and the reconciler's): each leg holds,
//! refuses, fails or dawdles as told, keeps its reservation book with the real
//! participants' own code (`banktransfer_protocol::reservation`: replays, tombstones, no
//! confirm after cancel), and records every call so a test can assert who was called,
//! when, and how often.
//!
//! Accounts open on demand, owned by whoever reserves on them, in the transfer's
//! currency: the external leg's with more than any test moves, the balance store's
//! empty. Only a script refuses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use banktransfer_protocol::audit::{AccountStatement, BookReservation};
use banktransfer_protocol::money::{Currency, Money};
use banktransfer_protocol::reservation::{
    self, AccountView, Balance, Refusal, RefusalReason, Reservation, ReservationStatus,
    ReserveOutcome, SettleOutcome, Side, Terms,
};
use banktransfer_protocol::transfer::{Leg, ReserveReply};
use coordinator::participants::{CallError, Page, Participants, ReservationView, ReserveTerms};
use tokio::sync::watch;

/// What a leg answers to a reserve it has never seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeReserve {
    Hold,
    Refuse(String),
    /// An error status: the hold is left unknown (and is not placed).
    Fail(String),
}

#[derive(Clone, Debug)]
pub struct LegScript {
    pub reserve: FakeReserve,
    /// Before a reserve is applied; a caller that stops waiting first leaves nothing held.
    pub reserve_delay: Duration,
    /// Before a confirm or cancel is applied.
    pub settle_delay: Duration,
    /// Confirm and cancel answer an error without applying.
    pub settle_fails: bool,
    /// GetReservation answers an error (the participant cannot be reached).
    pub reads_fail: bool,
}

impl Default for LegScript {
    fn default() -> Self {
        LegScript {
            reserve: FakeReserve::Hold,
            reserve_delay: Duration::ZERO,
            settle_delay: Duration::ZERO,
            settle_fails: false,
            reads_fail: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Reserve,
    Confirm,
    Cancel,
    GetReservation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub leg: Leg,
    pub op: Op,
    pub transfer_id: String,
}

/// What the external leg's accounts open with: more than any test moves.
const EXTERNAL_OPENING_MINOR: i64 = 1_000_000_000_000;

/// What a tampered reservation ([`FakeParticipants::set_reservation`]) with no reserve
/// behind it is for: one minor unit, on an account of its own.
const TAMPERED_AMOUNT_MINOR: i64 = 1;

#[derive(Default)]
struct Book {
    scripts: [LegScript; 2],
    calls: Vec<Call>,
    reservations: HashMap<(Leg, String), Reservation>,
    balances: HashMap<(Leg, String), Balance>,
}

impl Book {
    fn reservation(&self, leg: Leg, transfer_id: &str) -> Option<&Reservation> {
        self.reservations.get(&(leg, transfer_id.to_owned()))
    }

    fn balance(&self, leg: Leg, account_id: &str) -> Balance {
        self.balances
            .get(&(leg, account_id.to_owned()))
            .copied()
            .unwrap_or(Balance::opening(opening_minor(leg)))
    }

    /// The account a reserve asks for, opened on demand for its user and currency.
    fn account(&self, leg: Leg, terms: &Terms) -> AccountView {
        AccountView {
            account_id: terms.account_id.clone(),
            user_id: terms.user_id.clone(),
            currency: terms.amount.currency(),
            balance: self.balance(leg, &terms.account_id),
        }
    }

    /// Writes a reservation, and its account's new balance, as one step (the real
    /// participants' one transaction).
    fn record(&mut self, leg: Leg, reservation: Reservation, balance: Option<Balance>) {
        if let (Some(balance), Some(terms)) = (balance, &reservation.terms) {
            self.balances
                .insert((leg, terms.account_id.clone()), balance);
        }
        self.reservations
            .insert((leg, reservation.transfer_id.clone()), reservation);
    }

    fn reserve(
        &mut self,
        leg: Leg,
        terms: Terms,
        transfer_id: &str,
        script: &LegScript,
    ) -> ReserveReply {
        let screening = match &script.reserve {
            FakeReserve::Hold => Ok(()),
            // The script stands for the participant's own screening.
            FakeReserve::Refuse(why) => Err(Refusal::new(RefusalReason::Antifraud, why.clone())),
            FakeReserve::Fail(why) if self.reservation(leg, transfer_id).is_none() => {
                return ReserveReply::Unknown(why.clone());
            }
            FakeReserve::Fail(_) => Ok(()),
        };
        let account = self.account(leg, &terms);
        let existing = self.reservation(leg, transfer_id);
        match reservation::reserve(
            side(leg),
            transfer_id,
            terms,
            existing,
            Some(&account),
            screening,
        ) {
            ReserveOutcome::Record {
                reservation,
                balance,
            } => {
                let reply = reserve_reply(&reservation.status);
                self.record(leg, reservation, balance);
                reply
            }
            ReserveOutcome::Replay(reservation) => reserve_reply(&reservation.status),
            // The real participant refuses the call itself: the hold is unknown.
            ReserveOutcome::Conflict(why) => ReserveReply::Unknown(why),
        }
    }

    fn settle(&mut self, leg: Leg, op: Op, transfer_id: &str) -> Result<(), CallError> {
        let existing = self.reservation(leg, transfer_id);
        let balance = existing
            .and_then(|r| r.terms.as_ref())
            .map(|terms| self.balance(leg, &terms.account_id));
        let outcome = match op {
            Op::Confirm => reservation::confirm(side(leg), transfer_id, existing, balance),
            Op::Cancel => reservation::cancel(side(leg), transfer_id, existing, balance),
            other => unreachable!("{other:?} is not a settlement"),
        };
        match outcome {
            SettleOutcome::Apply {
                reservation,
                balance,
            } => self.record(leg, reservation, Some(balance)),
            // A cancel of an unknown transfer leaves a tombstone.
            SettleOutcome::Record(reservation) => self.record(leg, reservation, None),
            SettleOutcome::Replay(_) => {}
            SettleOutcome::Reject(why) => return Err(CallError(why)),
        }
        Ok(())
    }

    /// Makes `leg` hold `view` for the transfer, as
    /// [`FakeParticipants::set_reservation`] tells.
    fn tamper(&mut self, leg: Leg, transfer_id: &str, view: ReservationView) {
        let key = (leg, transfer_id.to_owned());
        let status = match view {
            ReservationView::NotFound => {
                self.reservations.remove(&key);
                return;
            }
            ReservationView::Held => ReservationStatus::Held,
            ReservationView::Confirmed => ReservationStatus::Confirmed,
            ReservationView::Cancelled => ReservationStatus::Cancelled,
            ReservationView::Refused => ReservationStatus::Refused(Refusal::new(
                RefusalReason::Antifraud,
                "refused (set by the test)",
            )),
        };
        let terms = match self.reservations.remove(&key) {
            Some(Reservation {
                terms: Some(terms), ..
            }) => terms,
            _ => {
                let terms = Terms {
                    account_id: format!("tampered-{transfer_id}"),
                    user_id: "tampered".into(),
                    amount: Money::positive(TAMPERED_AMOUNT_MINOR, "EUR").expect("a valid amount"),
                };
                let balance = self.moved_by_the_book(leg, transfer_id, &terms, &status);
                self.balances
                    .insert((leg, terms.account_id.clone()), balance);
                terms
            }
        };
        let reservation = Reservation {
            transfer_id: transfer_id.to_owned(),
            terms: Some(terms),
            status,
        };
        self.reservations.insert(key, reservation);
    }
}

impl Book {
    /// The balance of `terms`' account once the participant's own book has moved the
    /// money `status` says moved (a hold; a hold then its confirm), as a reserve and a
    /// confirm sent straight to the participant would: with no transfer behind them.
    fn moved_by_the_book(
        &self,
        leg: Leg,
        transfer_id: &str,
        terms: &Terms,
        status: &ReservationStatus,
    ) -> Balance {
        let account = self.account(leg, terms);
        if !matches!(
            status,
            ReservationStatus::Held | ReservationStatus::Confirmed
        ) {
            return account.balance;
        }
        let outcome = reservation::reserve(
            side(leg),
            transfer_id,
            terms.clone(),
            None,
            Some(&account),
            Ok(()),
        );
        let ReserveOutcome::Record {
            reservation: held,
            balance: Some(balance),
        } = outcome
        else {
            panic!("a tampered hold of {TAMPERED_AMOUNT_MINOR} fits any fake account: {outcome:?}");
        };
        if *status == ReservationStatus::Held {
            return balance;
        }
        match reservation::confirm(side(leg), transfer_id, Some(&held), Some(balance)) {
            SettleOutcome::Apply { balance, .. } => balance,
            other => panic!("a fresh hold confirms: {other:?}"),
        }
    }

    /// `leg`'s reservations in transfer id order, after `after`.
    fn listed_reservations(&self, leg: Leg, after: &str) -> Vec<BookReservation> {
        let mut listed: Vec<BookReservation> = self
            .reservations
            .iter()
            .filter(|((on, transfer_id), _)| *on == leg && transfer_id.as_str() > after)
            .map(|(_, r)| BookReservation {
                transfer_id: r.transfer_id.clone(),
                terms: r.terms.clone(),
                view: ReservationView::of_status(Some(&r.status)),
            })
            .collect();
        listed.sort_by(|a, b| a.transfer_id.cmp(&b.transfer_id));
        listed
    }

    /// `leg`'s accounts in account id order, after `after`: every account a reservation
    /// names or money moved through. An account's currency is its reservations'; its
    /// opening balance the one it opened with on demand.
    fn listed_accounts(&self, leg: Leg, after: &str) -> Vec<AccountStatement> {
        // (currency, owner) by account id.
        let mut accounts: BTreeMap<&str, (Currency, &str)> = BTreeMap::new();
        for ((on, _), r) in &self.reservations {
            if let (true, Some(terms)) = (*on == leg, &r.terms) {
                accounts
                    .entry(terms.account_id.as_str())
                    .or_insert((terms.amount.currency(), terms.user_id.as_str()));
            }
        }
        // Money moved, then the reservation that moved it taken away by a test.
        for (on, account_id) in self.balances.keys() {
            if *on == leg {
                accounts
                    .entry(account_id.as_str())
                    .or_insert((Currency::USD, ""));
            }
        }
        accounts
            .into_iter()
            .filter(|(account_id, _)| *account_id > after)
            .map(|(account_id, (currency, user_id))| {
                let (mut held, mut confirmed) = (0, 0);
                for ((on, _), r) in &self.reservations {
                    let Some(terms) = r.terms.as_ref().filter(|t| {
                        *on == leg && t.account_id == account_id && t.amount.currency() == currency
                    }) else {
                        continue;
                    };
                    match r.status {
                        ReservationStatus::Held => held += terms.amount.minor_units(),
                        ReservationStatus::Confirmed => confirmed += terms.amount.minor_units(),
                        ReservationStatus::Cancelled | ReservationStatus::Refused(_) => {}
                    }
                }
                AccountStatement {
                    account_id: account_id.to_owned(),
                    user_id: user_id.to_owned(),
                    currency,
                    balance: self.balance(leg, account_id),
                    opening_minor: Some(opening_minor(leg)),
                    reservations_held_minor: held,
                    reservations_confirmed_minor: confirmed,
                }
            })
            .collect()
    }
}

/// What the fake's accounts open with, on demand.
fn opening_minor(leg: Leg) -> i64 {
    match side(leg) {
        Side::Debit => EXTERNAL_OPENING_MINOR,
        Side::Credit => 0,
    }
}

/// One page of `listed` (in key order, after the page token), and the next page's token:
/// the fake's tokens are the last key of the page before.
fn page<T>(mut listed: Vec<T>, page_size: u32, key: impl Fn(&T) -> &str) -> Page<T> {
    let size = usize::try_from(page_size).expect("a page size fits in usize");
    if listed.len() <= size {
        return Page {
            entries: listed,
            next_page_token: String::new(),
        };
    }
    listed.truncate(size);
    let next_page_token = listed
        .last()
        .map(|last| key(last).to_owned())
        .unwrap_or_default();
    Page {
        entries: listed,
        next_page_token,
    }
}

fn side(leg: Leg) -> Side {
    match leg {
        Leg::External => Side::Debit,
        Leg::BalanceStore => Side::Credit,
    }
}

/// What the coordinator's gRPC client makes of the reservation a reserve answers with.
fn reserve_reply(status: &ReservationStatus) -> ReserveReply {
    match status {
        ReservationStatus::Held | ReservationStatus::Confirmed => ReserveReply::Held,
        ReservationStatus::Refused(refusal) => ReserveReply::Refused(refusal.to_string()),
        ReservationStatus::Cancelled => {
            ReserveReply::Refused("cancelled before the reserve arrived".into())
        }
    }
}

pub struct FakeParticipants {
    book: Mutex<Book>,
    /// Per leg; reserves wait while it is closed (false), before they are applied.
    reserve_gates: [watch::Sender<bool>; 2],
    /// Per leg; confirms and cancels wait while it is closed (false).
    settle_gates: [watch::Sender<bool>; 2],
}

impl Default for FakeParticipants {
    fn default() -> Self {
        FakeParticipants {
            book: Mutex::default(),
            reserve_gates: [watch::Sender::new(true), watch::Sender::new(true)],
            settle_gates: [watch::Sender::new(true), watch::Sender::new(true)],
        }
    }
}

/// Waits until `gate` is open.
async fn pass(gate: &watch::Sender<bool>) {
    let mut open = gate.subscribe();
    let _ = open.wait_for(|open| *open).await;
}

fn index(leg: Leg) -> usize {
    match leg {
        Leg::External => 0,
        Leg::BalanceStore => 1,
    }
}

impl FakeParticipants {
    /// Both legs hold at once and settle at once.
    pub fn new() -> FakeParticipants {
        FakeParticipants::default()
    }

    pub fn script(&self, leg: Leg, edit: impl FnOnce(&mut LegScript)) {
        edit(&mut self.lock().scripts[index(leg)]);
    }

    /// Reserves on `leg` wait (unapplied) until [`FakeParticipants::open_reserve_gate`].
    pub fn close_reserve_gate(&self, leg: Leg) {
        self.reserve_gates[index(leg)].send_replace(false);
    }

    pub fn open_reserve_gate(&self, leg: Leg) {
        self.reserve_gates[index(leg)].send_replace(true);
    }

    /// Confirms and cancels on `leg` wait until [`FakeParticipants::open_settle_gate`].
    pub fn close_settle_gate(&self, leg: Leg) {
        self.settle_gates[index(leg)].send_replace(false);
    }

    pub fn open_settle_gate(&self, leg: Leg) {
        self.settle_gates[index(leg)].send_replace(true);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn count(&self, leg: Leg, op: Op, transfer_id: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.leg == leg && c.op == op && c.transfer_id == transfer_id)
            .count()
    }

    /// Calls of `op` on either leg for any transfer.
    pub fn count_op(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| c.op == op).count()
    }

    pub fn reservation(&self, leg: Leg, transfer_id: &str) -> ReservationView {
        let book = self.lock();
        ReservationView::of_status(book.reservation(leg, transfer_id).map(|r| &r.status))
    }

    /// The balance of the account `leg` opened for `account_id` (its opening balance if
    /// no reserve reached it yet).
    pub fn balance(&self, leg: Leg, account_id: &str) -> Balance {
        self.lock().balance(leg, account_id)
    }

    /// Overwrites what a leg holds (an audit test's tampering, or a reserve a test
    /// pretends reached the leg). For a transfer id the leg never saw, a hold or a
    /// confirmation moves the money as the participant's own book would (one minor unit
    /// of EUR, on an account of its own): a reserve and a confirm sent straight
    /// to the participant. A status changed under an existing reservation leaves its
    /// account's balance as it was, as an edit of the database would.
    pub fn set_reservation(&self, leg: Leg, transfer_id: &str, view: ReservationView) {
        self.lock().tamper(leg, transfer_id, view);
    }

    /// Waits (at most `within`) until `op` reached `leg` for `transfer_id`.
    pub async fn wait_for_call(
        &self,
        leg: Leg,
        op: Op,
        transfer_id: &str,
        within: Duration,
    ) -> bool {
        let give_up = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < give_up {
            if self.count(leg, op, transfer_id) > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("fake participants lock")
    }

    /// Records the call and returns the leg's script as it stood when the call arrived.
    fn arrive(&self, leg: Leg, op: Op, transfer_id: &str) -> LegScript {
        let mut book = self.lock();
        book.calls.push(Call {
            leg,
            op,
            transfer_id: transfer_id.to_owned(),
        });
        book.scripts[index(leg)].clone()
    }

    async fn settle(&self, leg: Leg, op: Op, transfer_id: &str) -> Result<(), CallError> {
        let script = self.arrive(leg, op, transfer_id);
        pass(&self.settle_gates[index(leg)]).await;
        tokio::time::sleep(script.settle_delay).await;
        if script.settle_fails {
            return Err(CallError(format!("{} is failing on purpose", leg.name())));
        }
        self.lock().settle(leg, op, transfer_id)
    }
}

impl Participants for FakeParticipants {
    async fn reserve(&self, leg: Leg, terms: &ReserveTerms, _timeout: Duration) -> ReserveReply {
        let script = self.arrive(leg, Op::Reserve, &terms.transfer_id);
        pass(&self.reserve_gates[index(leg)]).await;
        tokio::time::sleep(script.reserve_delay).await;
        let book_terms = Terms {
            account_id: terms.account_id.clone(),
            user_id: terms.user_id.clone(),
            amount: terms.amount,
        };
        self.lock()
            .reserve(leg, book_terms, &terms.transfer_id, &script)
    }

    async fn confirm(
        &self,
        leg: Leg,
        transfer_id: &str,
        _timeout: Duration,
    ) -> Result<(), CallError> {
        self.settle(leg, Op::Confirm, transfer_id).await
    }

    async fn cancel(
        &self,
        leg: Leg,
        transfer_id: &str,
        _timeout: Duration,
    ) -> Result<(), CallError> {
        self.settle(leg, Op::Cancel, transfer_id).await
    }

    async fn get_reservation(
        &self,
        leg: Leg,
        transfer_id: &str,
        _timeout: Duration,
    ) -> Result<ReservationView, CallError> {
        if self.arrive(leg, Op::GetReservation, transfer_id).reads_fail {
            return Err(CallError(format!(
                "{} is unreachable on purpose",
                leg.name()
            )));
        }
        Ok(self.reservation(leg, transfer_id))
    }

    /// Not recorded as a call: the audit's reads of a whole book are no transfer's.
    async fn list_reservations(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        _timeout: Duration,
    ) -> Result<Page<BookReservation>, CallError> {
        let listed = self.lock().listed_reservations(leg, page_token);
        Ok(page(listed, page_size, |r| &r.transfer_id))
    }

    async fn list_accounts(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        _timeout: Duration,
    ) -> Result<Page<AccountStatement>, CallError> {
        let listed = self.lock().listed_accounts(leg, page_token);
        Ok(page(listed, page_size, |a| &a.account_id))
    }
}

#[cfg(test)]
mod tests {
    use banktransfer_protocol::audit::{Finding, book_findings};

    use super::*;

    fn terms(transfer_id: &str, amount_minor: i64) -> ReserveTerms {
        ReserveTerms {
            transfer_id: transfer_id.into(),
            user_id: "alice".into(),
            account_id: "ext-1".into(),
            amount: Money::positive(amount_minor, "USD").unwrap(),
        }
    }

    #[tokio::test]
    async fn the_book_follows_the_real_participants_rules() {
        let fake = FakeParticipants::new();
        let t = Duration::from_secs(1);
        let leg = Leg::External;
        assert_eq!(
            fake.reserve(leg, &terms("t1", 250), t).await,
            ReserveReply::Held
        );
        assert_eq!(fake.balance(leg, "ext-1").reserved_minor, 250);
        // A replay answers the same and holds nothing more; other terms are a conflict.
        assert_eq!(
            fake.reserve(leg, &terms("t1", 250), t).await,
            ReserveReply::Held
        );
        assert_eq!(fake.balance(leg, "ext-1").reserved_minor, 250);
        assert!(matches!(
            fake.reserve(leg, &terms("t1", 999), t).await,
            ReserveReply::Unknown(_)
        ));
        fake.confirm(leg, "t1", t).await.unwrap();
        assert_eq!(fake.balance(leg, "ext-1").confirmed_minor, 250);
        assert!(
            fake.cancel(leg, "t1", t).await.is_err(),
            "confirmed is final"
        );
        // A cancel before the reserve leaves a tombstone the late reserve meets.
        fake.cancel(leg, "t2", t).await.unwrap();
        assert_eq!(
            fake.reserve(leg, &terms("t2", 250), t).await,
            ReserveReply::Refused("cancelled before the reserve arrived".into())
        );
        assert!(fake.confirm(leg, "t2", t).await.is_err());
        assert_eq!(fake.reservation(leg, "t2"), ReservationView::Cancelled);
        assert_eq!(fake.balance(leg, "ext-1").reserved_minor, 0);
    }

    #[tokio::test]
    async fn its_books_list_in_pages_and_explain_themselves() {
        let fake = FakeParticipants::new();
        let t = Duration::from_secs(1);
        for (id, amount) in [("t1", 100), ("t2", 50), ("t3", 25)] {
            assert_eq!(
                fake.reserve(Leg::External, &terms(id, amount), t).await,
                ReserveReply::Held
            );
        }
        fake.confirm(Leg::External, "t1", t).await.unwrap();
        fake.cancel(Leg::External, "t2", t).await.unwrap();
        let first = fake
            .list_reservations(Leg::External, 2, "", t)
            .await
            .unwrap();
        let ids: Vec<&str> = first
            .entries
            .iter()
            .map(|r| r.transfer_id.as_str())
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        let rest = fake
            .list_reservations(Leg::External, 2, &first.next_page_token, t)
            .await
            .unwrap();
        assert_eq!(rest.entries.len(), 1);
        assert_eq!(rest.next_page_token, "");

        // A reserve and a confirm sent straight to the leg: its book explains the
        // balance, and only the missing transfer tells the theft.
        fake.set_reservation(Leg::BalanceStore, "steal", ReservationView::Confirmed);
        let log = BTreeMap::new();
        for leg in Leg::BOTH {
            let reservations = fake.list_reservations(leg, 100, "", t).await.unwrap();
            let accounts = fake.list_accounts(leg, 100, "", t).await.unwrap();
            assert_eq!(accounts.next_page_token, "");
            let found = book_findings(leg, &reservations.entries, &accounts.entries, &log);
            let unmatched: Vec<String> = found
                .iter()
                .map(|f| match f {
                    Finding::UnmatchedReservation(u) => u.transfer_id.clone(),
                    Finding::UnexplainedBalance(u) => panic!("{leg:?}: {u}"),
                })
                .collect();
            let expected: &[&str] = match leg {
                Leg::External => &["t1", "t3"],
                Leg::BalanceStore => &["steal"],
            };
            assert_eq!(unmatched, expected, "{leg:?}");
        }
    }

    #[tokio::test]
    async fn a_tampered_hold_can_be_settled() {
        let fake = FakeParticipants::new();
        let t = Duration::from_secs(1);
        fake.set_reservation(Leg::BalanceStore, "t1", ReservationView::Held);
        fake.cancel(Leg::BalanceStore, "t1", t).await.unwrap();
        assert_eq!(
            fake.reservation(Leg::BalanceStore, "t1"),
            ReservationView::Cancelled
        );
        fake.set_reservation(Leg::BalanceStore, "t1", ReservationView::NotFound);
        assert_eq!(
            fake.reservation(Leg::BalanceStore, "t1"),
            ReservationView::NotFound
        );
    }
}
