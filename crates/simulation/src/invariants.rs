//! The money invariants, read straight from the in-memory stores.
//!
//! Safety ([`check_safety`]), after every step that changed a store: no negative balance;
//! each external account conserves its opening balance (available + reserved + confirmed);
//! each internal account's available balance is its confirmed credits; each book's
//! balances match its reservations; no transfer is confirmed at one participant and
//! cancelled, refused or tombstoned at the other; nothing is confirmed unless the
//! coordinator recorded the commit; nothing is held once the transfer is final; and the
//! protocol's money-audit rules (`banktransfer_protocol::audit`, the reconciler's too)
//! agree: the legs rule on every transfer, the books rule on both whole books.
//!
//! Liveness ([`unsettled`], [`check_at_rest`]), once the faults are over: every transfer
//! final, nothing held, both books agree with the coordinator, and every answer a user
//! got is consistent with where its transfer ended; a key whose every ApproveTransfer was
//! refused at admission (RESOURCE_EXHAUSTED) has no transfer: a refusal records nothing.

use std::collections::{BTreeMap, BTreeSet};

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_protocol::audit::{self, BookReservation, LoggedTransfer, ReservationView};
use banktransfer_protocol::reservation::ReservationStatus;
use banktransfer_protocol::transfer::{Leg, RecordedState};
use coordinator::store::TransferRecord;
use testkit::memory_book::{BookSnapshot, StoredReservation};

use crate::workload::{Answer, Call, Observation};
use crate::world::{User, World};

/// A broken invariant: its name (stable, for tests) and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub invariant: &'static str,
    pub detail: String,
}

fn broken(invariant: &'static str, detail: String) -> Result<(), Broken> {
    Err(Broken { invariant, detail })
}

struct Snapshot {
    transfers: BTreeMap<String, TransferRecord>,
    external: BookSnapshot,
    balance_store: BookSnapshot,
}

impl Snapshot {
    fn of(world: &World) -> Snapshot {
        Snapshot {
            transfers: world.coordinator.snapshot(),
            external: world.external.snapshot(),
            balance_store: world.balance_store.snapshot(),
        }
    }
}

fn view(stored: Option<&StoredReservation>) -> ReservationView {
    ReservationView::of_status(stored.map(|s| &s.reservation.status))
}

/// Sums of the reservations per account: (held, confirmed).
fn sums(book: &BookSnapshot) -> BTreeMap<&str, (i64, i64)> {
    let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for stored in book.reservations.values() {
        let Some(terms) = &stored.reservation.terms else {
            continue;
        };
        let entry = sums.entry(terms.account_id.as_str()).or_default();
        match stored.reservation.status {
            ReservationStatus::Held => entry.0 += terms.amount.minor_units(),
            ReservationStatus::Confirmed => entry.1 += terms.amount.minor_units(),
            ReservationStatus::Cancelled | ReservationStatus::Refused(_) => {}
        }
    }
    sums
}

fn check_book(name: &str, book: &BookSnapshot) -> Result<(), Broken> {
    let sums = sums(book);
    for account in book.accounts.values() {
        let b = account.balance;
        if b.available_minor < 0 || b.reserved_minor < 0 || b.confirmed_minor < 0 {
            return broken(
                "negative_balance",
                format!("{name} account {}: {b:?}", account.account_id),
            );
        }
        let (held, confirmed) = sums
            .get(account.account_id.as_str())
            .copied()
            .unwrap_or_default();
        if (b.reserved_minor, b.confirmed_minor) != (held, confirmed) {
            return broken(
                "balance_matches_reservations",
                format!(
                    "{name} account {}: reserved {} and confirmed {} but its reservations \
                     hold {held} and confirmed {confirmed}",
                    account.account_id, b.reserved_minor, b.confirmed_minor
                ),
            );
        }
    }
    Ok(())
}

fn check_balances(users: &[User], snapshot: &Snapshot) -> Result<(), Broken> {
    check_book("external", &snapshot.external)?;
    check_book("balance_store", &snapshot.balance_store)?;
    let mut opening_total = 0;
    let mut external_total = 0;
    for user in users {
        let account = &snapshot.external.accounts[&user.external_account_id];
        let b = account.balance;
        let total = b.available_minor + b.reserved_minor + b.confirmed_minor;
        if total != user.opening_minor {
            return broken(
                "external_conservation",
                format!(
                    "{}: available {} + reserved {} + confirmed {} = {total}, opened with {}",
                    account.account_id,
                    b.available_minor,
                    b.reserved_minor,
                    b.confirmed_minor,
                    user.opening_minor
                ),
            );
        }
        opening_total += user.opening_minor;
        external_total += total;
    }
    if opening_total != external_total {
        return broken(
            "external_conservation",
            format!("external accounts hold {external_total}, opened with {opening_total}"),
        );
    }
    for account in snapshot.balance_store.accounts.values() {
        let b = account.balance;
        if b.available_minor != b.confirmed_minor {
            return broken(
                "internal_available_is_confirmed_credits",
                format!(
                    "{}: available {} but confirmed credits {}",
                    account.account_id, b.available_minor, b.confirmed_minor
                ),
            );
        }
    }
    Ok(())
}

fn check_transfer(
    id: &str,
    record: Option<&TransferRecord>,
    legs: [(Leg, Option<&StoredReservation>); 2],
) -> Result<(), Broken> {
    let views = legs.map(|(leg, stored)| (leg, view(stored)));
    let Some(record) = record else {
        return broken(
            "reservation_without_transfer",
            format!("transfer {id} is unknown to the coordinator but reserved: {views:?}"),
        );
    };
    for (leg, stored) in legs {
        let Some(terms) = stored.and_then(|s| s.reservation.terms.as_ref()) else {
            continue;
        };
        let account = match leg {
            Leg::External => &record.external_account_id,
            Leg::BalanceStore => &record.internal_account_id,
        };
        if terms.amount != record.amount
            || &terms.account_id != account
            || terms.user_id != record.user_id
        {
            return broken(
                "reservation_matches_transfer",
                format!("transfer {id}: the {} holds {terms:?}", leg.name()),
            );
        }
    }
    let released =
        |v: ReservationView| matches!(v, ReservationView::Cancelled | ReservationView::Refused);
    let [(_, external), (_, internal)] = views;
    if (external == ReservationView::Confirmed && released(internal))
        || (internal == ReservationView::Confirmed && released(external))
    {
        return broken(
            "confirmed_and_cancelled",
            format!(
                "transfer {id} ({}): external {}, balance store {}",
                record.state.as_str(),
                external.as_str(),
                internal.as_str()
            ),
        );
    }
    let committed = matches!(
        record.state,
        RecordedState::Committed | RecordedState::Succeeded
    );
    if !committed && views.iter().any(|(_, v)| *v == ReservationView::Confirmed) {
        return broken(
            "confirmed_without_commit",
            format!(
                "transfer {id} is {} but confirmed: external {}, balance store {}",
                record.state.as_str(),
                external.as_str(),
                internal.as_str()
            ),
        );
    }
    if record.state.is_final() && views.iter().any(|(_, v)| *v == ReservationView::Held) {
        return broken(
            "hold_after_final",
            format!(
                "transfer {id} is {} but still held: external {}, balance store {}",
                record.state.as_str(),
                external.as_str(),
                internal.as_str()
            ),
        );
    }
    if let Some(mismatch) = audit::mismatches(record.state, views).first() {
        return broken("reconciler_audit", format!("transfer {id}: {mismatch}"));
    }
    Ok(())
}

/// Every safety invariant, on the stores as they are now.
pub fn check_safety(world: &World) -> Result<(), Broken> {
    let snapshot = Snapshot::of(world);
    check_balances(&world.users, &snapshot)?;
    let ids: BTreeSet<&String> = snapshot
        .transfers
        .keys()
        .chain(snapshot.external.reservations.keys())
        .chain(snapshot.balance_store.reservations.keys())
        .collect();
    for id in ids {
        check_transfer(
            id,
            snapshot.transfers.get(id),
            [
                (Leg::External, snapshot.external.reservations.get(id)),
                (
                    Leg::BalanceStore,
                    snapshot.balance_store.reservations.get(id),
                ),
            ],
        )?;
    }
    check_books(&snapshot)
}

/// The reconciler's books rule (`banktransfer_protocol::audit::book_findings`) over both
/// whole books: every reservation holding or moving money matches a recorded transfer,
/// and every account's balances follow from its opening balance and its reservations.
fn check_books(snapshot: &Snapshot) -> Result<(), Broken> {
    let logged: BTreeMap<String, LoggedTransfer> = snapshot
        .transfers
        .values()
        .map(|record| (record.transfer_id.clone(), record.logged()))
        .collect();
    let books = [
        (Leg::External, &snapshot.external),
        (Leg::BalanceStore, &snapshot.balance_store),
    ];
    for (leg, book) in books {
        let reservations: Vec<BookReservation> = book
            .reservations
            .values()
            .map(|stored| BookReservation {
                transfer_id: stored.reservation.transfer_id.clone(),
                terms: stored.reservation.terms.clone(),
                view: view(Some(stored)),
            })
            .collect();
        let accounts = book.list_accounts(None, u32::MAX);
        if let Some(finding) = audit::book_findings(leg, &reservations, &accounts, &logged).first()
        {
            return broken("reconciler_audit_books", finding.to_string());
        }
    }
    Ok(())
}

/// Why the system is not at rest yet, if it is not: a transfer unfinished or money held.
pub fn unsettled(world: &World) -> Option<String> {
    let unfinished: Vec<String> = world.coordinator.inspect(|records| {
        records
            .values()
            .filter(|r| !r.state.is_final())
            .map(|r| {
                format!(
                    "{} {} (attempts {}, next at {} ms, lease {:?})",
                    r.transfer_id,
                    r.state.as_str(),
                    r.attempts,
                    r.next_attempt_at_ms.saturating_sub(crate::clock::EPOCH_MS),
                    r.lease_owner
                )
            })
            .collect()
    });
    if !unfinished.is_empty() {
        let shown: Vec<&String> = unfinished.iter().take(5).collect();
        return Some(format!(
            "{} transfers unfinished, e.g. {shown:?}",
            unfinished.len()
        ));
    }
    let held = |book: &BookSnapshot| {
        book.accounts
            .values()
            .filter(|a| a.balance.reserved_minor != 0)
            .map(|a| format!("{} holds {}", a.account_id, a.balance.reserved_minor))
            .collect::<Vec<_>>()
    };
    let mut holds = world.external.inspect(held);
    holds.extend(world.balance_store.inspect(held));
    (!holds.is_empty()).then(|| format!("money still held: {holds:?}"))
}

/// Once at rest: both books agree with the coordinator, and every answer the users got
/// is consistent with where its transfer ended.
pub fn check_at_rest(world: &World, observations: &[Observation]) -> Result<(), Broken> {
    let snapshot = Snapshot::of(world);
    let succeeded_total: i64 = snapshot
        .transfers
        .values()
        .filter(|r| r.state == RecordedState::Succeeded)
        .map(|r| r.amount.minor_units())
        .sum();
    let confirmed_total = |book: &BookSnapshot| -> i64 {
        book.accounts
            .values()
            .map(|a| a.balance.confirmed_minor)
            .sum()
    };
    let external_total = confirmed_total(&snapshot.external);
    let balance_store_total = confirmed_total(&snapshot.balance_store);
    if external_total != balance_store_total || balance_store_total != succeeded_total {
        return broken(
            "books_agree",
            format!(
                "confirmed out of external accounts {external_total}, into internal accounts \
                 {balance_store_total}, succeeded transfers {succeeded_total}"
            ),
        );
    }
    check_answers(&snapshot.transfers, observations)?;
    check_final_answers_stay(observations)?;
    check_refusals(&snapshot.transfers, observations)
}

/// Once a user was told a transfer's final status, every later answer for its key says
/// the same: the gateway answers SUCCEEDED before the outcome's write lands, and a read
/// in between must find it in the legs, not answer PROCESSING. Each simulated user
/// sends one call at a time, so its observations are in the order it made them.
fn check_final_answers_stay(observations: &[Observation]) -> Result<(), Broken> {
    let mut told: BTreeMap<(&str, &str), (TransferStatus, u64)> = BTreeMap::new();
    for o in observations {
        let Answer::Transfer { status, .. } = &o.answer else {
            continue;
        };
        let key = (o.user_id.as_str(), o.idempotency_key.as_str());
        if let Some((earlier, at_ms)) = told.get(&key)
            && earlier != status
        {
            return broken(
                "final_answers_stay",
                format!(
                    "{} key={}: told {} at {at_ms} ms, then {} at {} ms ({:?})",
                    o.user_id,
                    o.idempotency_key,
                    earlier.as_str_name(),
                    status.as_str_name(),
                    o.answered_at_ms,
                    o.call
                ),
            );
        }
        if matches!(status, TransferStatus::Succeeded | TransferStatus::Failed) {
            told.entry(key).or_insert((*status, o.answered_at_ms));
        }
    }
    Ok(())
}

/// RESOURCE_EXHAUSTED (the gateway's admission control, or the server's own in-flight
/// bound) comes before the intent is written: a key that only ever got that answer must
/// hold no transfer.
fn check_refusals(
    transfers: &BTreeMap<String, TransferRecord>,
    observations: &[Observation],
) -> Result<(), Broken> {
    let mut only_refused: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for o in observations {
        if !matches!(o.call, Call::Approve { .. }) {
            continue;
        }
        let refused = o.answer == Answer::Error(tonic::Code::ResourceExhausted);
        *only_refused
            .entry((o.user_id.as_str(), o.idempotency_key.as_str()))
            .or_insert(true) &= refused;
    }
    for record in transfers.values() {
        let key = (record.user_id.as_str(), record.idempotency_key.as_str());
        if only_refused.get(&key) == Some(&true) {
            return broken(
                "refusal_records_nothing",
                format!(
                    "{} key={}: every ApproveTransfer was refused with RESOURCE_EXHAUSTED, yet \
                     transfer {} is recorded ({})",
                    record.user_id,
                    record.idempotency_key,
                    record.transfer_id,
                    record.state.as_str()
                ),
            );
        }
    }
    Ok(())
}

fn check_answers(
    transfers: &BTreeMap<String, TransferRecord>,
    observations: &[Observation],
) -> Result<(), Broken> {
    let by_key: BTreeMap<(&str, &str), &TransferRecord> = transfers
        .values()
        .map(|r| ((r.user_id.as_str(), r.idempotency_key.as_str()), r))
        .collect();
    for o in observations {
        let Answer::Transfer {
            transfer_id,
            status,
            user_id,
            idempotency_key,
            amount_minor,
        } = &o.answer
        else {
            continue;
        };
        let asked = format!(
            "{} {:?} key={} answered at {} ms",
            o.user_id, o.call, o.idempotency_key, o.answered_at_ms
        );
        let amount_differs =
            matches!(o.call, Call::Approve { amount_minor: asked } if asked != *amount_minor);
        if user_id != &o.user_id || idempotency_key != &o.idempotency_key || amount_differs {
            return broken(
                "answer_matches_request",
                format!("{asked}: answered {:?}", o.answer),
            );
        }
        let Some(record) = transfers.get(transfer_id) else {
            return broken(
                "answer_names_a_recorded_transfer",
                format!("{asked}: {transfer_id} is not in the coordinator's log"),
            );
        };
        let keyed = by_key.get(&(user_id.as_str(), idempotency_key.as_str()));
        if keyed.map(|r| r.transfer_id.as_str()) != Some(transfer_id.as_str()) {
            return broken(
                "one_transfer_per_key",
                format!(
                    "{asked}: answered {transfer_id}, the key holds {:?}",
                    keyed.map(|r| &r.transfer_id)
                ),
            );
        }
        let consistent = match status {
            TransferStatus::Succeeded => record.state == RecordedState::Succeeded,
            TransferStatus::Failed => record.state == RecordedState::Failed,
            TransferStatus::Processing => true,
            TransferStatus::Unspecified => false,
        };
        if !consistent {
            return broken(
                "answer_consistent_with_final_state",
                format!(
                    "{asked}: answered {} for {transfer_id}, which ended {}",
                    status.as_str_name(),
                    record.state.as_str()
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(key: &str, call: Call, status: TransferStatus, at_ms: u64) -> Observation {
        Observation {
            user_id: "u1".into(),
            idempotency_key: key.into(),
            call,
            deadline_ms: 200,
            answered_at_ms: at_ms,
            answer: Answer::Transfer {
                transfer_id: format!("t-{key}"),
                status,
                user_id: "u1".into(),
                idempotency_key: key.into(),
                amount_minor: 5,
            },
        }
    }

    #[test]
    fn a_final_answer_may_follow_processing_but_nothing_may_follow_it_but_itself() {
        use TransferStatus::{Failed, Processing, Succeeded};
        let approve = Call::Approve { amount_minor: 5 };
        let fine = [
            told("k1", approve.clone(), Processing, 1),
            told("k1", Call::Get, Succeeded, 2),
            told("k1", approve.clone(), Succeeded, 3),
            told("k2", approve.clone(), Failed, 4),
            told("k1", Call::Get, Succeeded, 5),
        ];
        assert!(check_final_answers_stay(&fine).is_ok());
        for later in [Processing, Failed] {
            let back = [
                told("k1", approve.clone(), Succeeded, 1),
                told("k1", Call::Get, later, 2),
            ];
            let broken = check_final_answers_stay(&back).unwrap_err();
            assert_eq!(broken.invariant, "final_answers_stay");
        }
    }
}
