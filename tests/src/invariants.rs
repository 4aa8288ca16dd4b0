//! The money invariants, read back through the services' own APIs once the system is at
//! rest (no transfer PROCESSING, nothing reserved, the reconciler's audit finds nothing
//! unfinished; waited for, bounded).
//!
//! Checked:
//! - no balance component is negative;
//! - external institution: per account and in total, available + reserved + confirmed ==
//!   opening balance (money is conserved);
//! - external confirmed per account == the SUCCEEDED transfers out of it;
//! - balance store: available == opening + the SUCCEEDED transfers into it, and confirmed
//!   == those transfers;
//! - at rest: no transfer PROCESSING, reserved == 0 everywhere;
//! - every transfer is confirmed on both sides or on neither: SUCCEEDED => both
//!   reservations CONFIRMED (same account and amount); FAILED => neither CONFIRMED nor
//!   HELD (NOT_FOUND is fine);
//! - the reconciler's Audit reports no mismatch, no reservation that no transfer
//!   matches, no account its opening balance and reservations do not explain, and read
//!   both participants' books whole (`banktransfer_protocol::audit`'s two rules).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use banktransfer_api::gateway::v1::{Transfer, TransferStatus};
use banktransfer_api::reconciler::v1::{AuditRequest, AuditResponse};
use banktransfer_api::reservation::v1::{Account, Reservation, ReservationStatus};
use banktransfer_protocol::audit::{self, ReservationView};
use banktransfer_protocol::ids;
use banktransfer_protocol::transfer::{Leg, RecordedState};
use tonic::{Code, Status};

use crate::accounts::{AccountSpec, Side, format_minor};
use crate::clients::{Clients, TransferKey, Transfers, request};

/// How long to wait for the reconciler to settle everything.
pub const REST_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of a check: what is wrong, and a readable picture of the state.
#[derive(Debug)]
pub struct Report {
    pub violations: Vec<String>,
    pub summary: String,
    /// Every account as last read, by account id.
    pub accounts: BTreeMap<String, Account>,
    /// Every transfer the gateway knows, by key.
    pub transfers: Vec<(TransferKey, Transfer)>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.violations.is_empty() {
            out.push_str("money invariants hold\n");
        } else {
            let _ = writeln!(
                out,
                "MONEY INVARIANTS VIOLATED ({}):",
                self.violations.len()
            );
            for v in &self.violations {
                let _ = writeln!(out, "  - {v}");
            }
        }
        out.push_str(&self.summary);
        out
    }

    pub fn count(&self, status: TransferStatus) -> usize {
        self.transfers
            .iter()
            .filter(|(_, t)| t.status() == status)
            .count()
    }
}

/// What the services report, as read by [`check`].
#[derive(Debug)]
pub struct Snapshot {
    pub accounts: Vec<(AccountSpec, Result<Account, Status>)>,
    pub transfers: Vec<(TransferKey, Result<Transfer, Status>)>,
    /// Both participants' reservation of each recorded transfer, by transfer id.
    pub legs: BTreeMap<String, Legs>,
    pub audit: Result<AuditResponse, Status>,
}

/// GetReservation on both participants for one transfer.
#[derive(Debug)]
pub struct Legs {
    pub external: Result<Reservation, Status>,
    pub internal: Result<Reservation, Status>,
}

async fn snapshot(
    clients: &Clients,
    transfers: &Transfers,
    accounts: &[AccountSpec],
    keys: &[TransferKey],
) -> Snapshot {
    let mut read_accounts = Vec::new();
    for spec in accounts {
        let account = match spec.side {
            Side::External => clients.external_account(&spec.account_id).await,
            Side::BalanceStore => clients.internal_account(&spec.account_id).await,
        };
        read_accounts.push((spec.clone(), account));
    }
    let mut read_transfers = Vec::new();
    for key in keys {
        read_transfers.push((key.clone(), transfer_of(transfers, key).await));
    }
    let audit = clients
        .reconciler
        .clone()
        .audit(request(AuditRequest { limit: 0 }))
        .await
        .map(tonic::Response::into_inner);
    Snapshot {
        accounts: read_accounts,
        transfers: read_transfers,
        legs: BTreeMap::new(),
        audit,
    }
}

/// GetTransfer by `key`, as its user. A key whose user id is not a valid id (a malformed
/// request the gateway refused) names no transfer: the gateway checks ids before it
/// records anything, and no token can name such a user, so it is not asked.
async fn transfer_of(transfers: &Transfers, key: &TransferKey) -> Result<Transfer, Status> {
    match ids::check_id("user_id", &key.user_id) {
        Ok(()) => transfers.get_by_key(key).await,
        Err(why) => Err(Status::invalid_argument(why)),
    }
}

impl Snapshot {
    /// `None` at rest, else why not.
    fn unrest(&self) -> Option<String> {
        for (spec, account) in &self.accounts {
            match account {
                Err(status) => return Some(format!("{} unreadable: {status}", spec.account_id)),
                Ok(a) if a.reserved_minor_units != 0 => {
                    return Some(format!(
                        "{} still has {} reserved",
                        spec.account_id,
                        format_minor(a.reserved_minor_units)
                    ));
                }
                Ok(_) => {}
            }
        }
        for (key, transfer) in &self.transfers {
            match transfer {
                Err(status) if never_recorded(status) => {}
                Err(status) => {
                    return Some(format!("transfer {key:?} unreadable: {status}"));
                }
                Ok(t) if t.status() == TransferStatus::Processing => {
                    return Some(format!("transfer {} still PROCESSING", t.transfer_id));
                }
                Ok(_) => {}
            }
        }
        match &self.audit {
            Err(status) => Some(format!("Audit failed: {status}")),
            Ok(audit) if audit.transfers_unfinished > 0 => Some(format!(
                "Audit reports {} unfinished transfer(s)",
                audit.transfers_unfinished
            )),
            Ok(_) => None,
        }
    }
}

/// Waits (at most `rest_timeout`) for the system to come to rest, then checks every
/// invariant over `accounts` and the transfers named by `keys`.
pub async fn check(
    clients: &Clients,
    transfers: &Transfers,
    accounts: &[AccountSpec],
    keys: &[TransferKey],
    rest_timeout: Duration,
) -> Report {
    let started = Instant::now();
    let mut violations = Vec::new();
    let mut snap = loop {
        let snap = snapshot(clients, transfers, accounts, keys).await;
        match snap.unrest() {
            None => break snap,
            Some(why) if started.elapsed() >= rest_timeout => {
                violations.push(format!("not at rest after {rest_timeout:?}: {why}"));
                break snap;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };

    for (_, transfer) in &snap.transfers {
        if let Ok(t) = transfer {
            let legs = Legs {
                external: clients.external_reservation(&t.transfer_id).await,
                internal: clients.internal_reservation(&t.transfer_id).await,
            };
            snap.legs.insert(t.transfer_id.clone(), legs);
        }
    }
    let mut report = evaluate(&snap);
    violations.append(&mut report.violations);
    report.violations = violations;
    report
}

/// Checks every invariant over what `snap` holds (read at rest).
pub fn evaluate(snap: &Snapshot) -> Report {
    let mut violations = Vec::new();
    let mut summary = String::new();
    let mut read_accounts = BTreeMap::new();

    // Transfers, with both participants' reservations.
    let mut known: Vec<(TransferKey, Transfer)> = Vec::new();
    let _ = writeln!(summary, "transfers ({}):", snap.transfers.len());
    for (key, transfer) in &snap.transfers {
        let t = match transfer {
            Ok(t) => t,
            Err(status) if never_recorded(status) => {
                let _ = writeln!(
                    summary,
                    "  (never recorded: {:?}) {}/{}",
                    status.code(),
                    key.user_id,
                    key.idempotency_key
                );
                continue;
            }
            Err(status) => {
                violations.push(format!("GetTransfer {key:?}: {status}"));
                continue;
            }
        };
        let not_read = || Err(Status::unknown("reservation not read"));
        let (ext, int) = match snap.legs.get(&t.transfer_id) {
            Some(legs) => (legs.external.clone(), legs.internal.clone()),
            None => (not_read(), not_read()),
        };
        let amount = t.amount.as_ref().map_or(0, |m| m.minor_units);
        let _ = writeln!(
            summary,
            "  {} key={} {} {} -> {} {} {:?}{} | external: {} | balance store: {}",
            t.transfer_id,
            t.idempotency_key,
            t.user_id,
            t.external_account_id,
            t.internal_account_id,
            format_minor(amount),
            t.status(),
            if t.failure_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.failure_reason)
            },
            describe(&ext),
            describe(&int),
        );
        check_legs(t, amount, &ext, &int, &mut violations);
        known.push((key.clone(), t.clone()));
    }

    // What the SUCCEEDED transfers moved, per account.
    let mut moved_out: BTreeMap<&str, i64> = BTreeMap::new();
    let mut moved_in: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, t) in &known {
        if t.status() == TransferStatus::Succeeded {
            let amount = t.amount.as_ref().map_or(0, |m| m.minor_units);
            *moved_out.entry(t.external_account_id.as_str()).or_default() += amount;
            *moved_in.entry(t.internal_account_id.as_str()).or_default() += amount;
        }
    }

    // Accounts.
    let _ = writeln!(summary, "accounts:");
    let (mut opening_total, mut held_total) = (0i64, 0i64);
    for (spec, account) in &snap.accounts {
        let a = match account {
            Ok(a) => a,
            Err(status) => {
                violations.push(format!("GetAccount {}: {status}", spec.account_id));
                continue;
            }
        };
        read_accounts.insert(spec.account_id.clone(), a.clone());
        let _ = writeln!(
            summary,
            "  {:?} {} ({} {}) opening {}: available {} reserved {} confirmed {}",
            spec.side,
            spec.account_id,
            spec.user_id,
            spec.currency,
            format_minor(spec.opening_minor),
            format_minor(a.available_minor_units),
            format_minor(a.reserved_minor_units),
            format_minor(a.confirmed_minor_units),
        );
        let id = spec.account_id.as_str();
        for (name, value) in [
            ("available", a.available_minor_units),
            ("reserved", a.reserved_minor_units),
            ("confirmed", a.confirmed_minor_units),
        ] {
            if value < 0 {
                violations.push(format!("{id}: {name} is negative ({value})"));
            }
        }
        if a.reserved_minor_units != 0 {
            violations.push(format!(
                "{id}: {} still reserved at rest",
                format_minor(a.reserved_minor_units)
            ));
        }
        match spec.side {
            Side::External => {
                let held =
                    a.available_minor_units + a.reserved_minor_units + a.confirmed_minor_units;
                opening_total += spec.opening_minor;
                held_total += held;
                if held != spec.opening_minor {
                    violations.push(format!(
                        "{id}: available + reserved + confirmed = {} but the account opened with {}",
                        format_minor(held),
                        format_minor(spec.opening_minor)
                    ));
                }
                let out = moved_out.get(id).copied().unwrap_or(0);
                if a.confirmed_minor_units != out {
                    violations.push(format!(
                        "{id}: confirmed out {} but SUCCEEDED transfers out of it total {}",
                        format_minor(a.confirmed_minor_units),
                        format_minor(out)
                    ));
                }
            }
            Side::BalanceStore => {
                let into = moved_in.get(id).copied().unwrap_or(0);
                if a.available_minor_units != spec.opening_minor + into {
                    violations.push(format!(
                        "{id}: available {} but opening {} + SUCCEEDED transfers in {} = {}",
                        format_minor(a.available_minor_units),
                        format_minor(spec.opening_minor),
                        format_minor(into),
                        format_minor(spec.opening_minor + into)
                    ));
                }
                if a.confirmed_minor_units != into {
                    violations.push(format!(
                        "{id}: confirmed in {} but SUCCEEDED transfers into it total {}",
                        format_minor(a.confirmed_minor_units),
                        format_minor(into)
                    ));
                }
            }
        }
    }
    if held_total != opening_total {
        violations.push(format!(
            "external institution: accounts hold {} in total but opened with {}",
            format_minor(held_total),
            format_minor(opening_total)
        ));
    }
    for (id, amount) in moved_out.iter().chain(moved_in.iter()) {
        if !snap.accounts.iter().any(|(spec, _)| spec.account_id == *id) {
            violations.push(format!(
                "SUCCEEDED transfers moved {} through {id}, an account the test does not know",
                format_minor(*amount)
            ));
        }
    }

    // The reconciler's own audit.
    match &snap.audit {
        Ok(audit) => {
            let _ = writeln!(
                summary,
                "audit: {} checked, {} unfinished, {} mismatch(es)",
                audit.transfers_checked,
                audit.transfers_unfinished,
                audit.mismatches.len()
            );
            for m in &audit.mismatches {
                let _ = writeln!(summary, "  mismatch {}: {}", m.transfer_id, m.description);
                violations.push(format!(
                    "Audit mismatch on {}: {}",
                    m.transfer_id, m.description
                ));
            }
            let _ = writeln!(
                summary,
                "audit of the books: {} reservation(s), {} account(s), {} unmatched, {} \
                 unexplained",
                audit.reservations_checked,
                audit.accounts_checked,
                audit.unmatched_reservations.len(),
                audit.unexplained_balances.len()
            );
            for u in &audit.unmatched_reservations {
                violations.push(format!("Audit: unmatched reservation: {}", u.description));
            }
            for u in &audit.unexplained_balances {
                violations.push(format!("Audit: unexplained balance: {}", u.description));
            }
            if audit.books_incomplete {
                violations.push("Audit: the books were not read whole".to_string());
            }
            if audit.transfers_unfinished > 0 {
                violations.push(format!(
                    "Audit: {} transfer(s) unfinished at rest",
                    audit.transfers_unfinished
                ));
            }
        }
        Err(status) => violations.push(format!("Audit failed: {status}")),
    }

    Report {
        violations,
        summary,
        accounts: read_accounts,
        transfers: known,
    }
}

/// A lookup that shows the gateway never recorded the transfer: the key is unknown, or
/// is not even a valid key (a malformed request the gateway refused).
fn never_recorded(status: &Status) -> bool {
    matches!(status.code(), Code::NotFound | Code::InvalidArgument)
}

fn describe(reservation: &Result<Reservation, Status>) -> String {
    match reservation {
        Ok(r) => {
            let mut s = format!(
                "{:?} {}",
                r.status(),
                format_minor(r.amount.as_ref().map_or(0, |m| m.minor_units))
            );
            if r.status() == ReservationStatus::Refused {
                let _ = write!(s, " ({:?}: {})", r.refusal_reason(), r.refusal_message);
            }
            s
        }
        Err(status) if status.code() == Code::NotFound => "NOT_FOUND".to_owned(),
        Err(status) => format!("error {:?}: {}", status.code(), status.message()),
    }
}

/// The protocol's money-audit rule on each leg (`banktransfer_protocol::audit`), at
/// rest: a FAILED transfer is final here, so it is judged as `failed`. A SUCCEEDED one's
/// reservations must also be for its account and amount.
fn check_legs(
    t: &Transfer,
    amount: i64,
    ext: &Result<Reservation, Status>,
    int: &Result<Reservation, Status>,
    violations: &mut Vec<String>,
) {
    let id = &t.transfer_id;
    let recorded = match t.status() {
        TransferStatus::Succeeded => RecordedState::Succeeded,
        TransferStatus::Failed => RecordedState::Failed,
        other => {
            violations.push(format!("{id}: status {other:?} at rest"));
            return;
        }
    };
    for (leg, reservation, account) in [
        (Leg::External, ext, &t.external_account_id),
        (Leg::BalanceStore, int, &t.internal_account_id),
    ] {
        let view = match reservation {
            Ok(r) => match view_of(r.status()) {
                Some(view) => view,
                None => {
                    violations.push(format!(
                        "{id}: the {} reservation has no status",
                        leg.name()
                    ));
                    continue;
                }
            },
            Err(status) if status.code() == Code::NotFound => ReservationView::NotFound,
            Err(status) => {
                violations.push(format!(
                    "{id}: GetReservation on the {}: {status}",
                    leg.name()
                ));
                continue;
            }
        };
        if let Some(mismatch) = audit::leg_mismatch(recorded, leg, view) {
            violations.push(format!("{id}: {mismatch}"));
        }
        if let (RecordedState::Succeeded, Ok(r)) = (recorded, reservation) {
            check_terms(id, leg, r, account, amount, violations);
        }
    }
}

fn view_of(status: ReservationStatus) -> Option<ReservationView> {
    match status {
        ReservationStatus::Unspecified => None,
        ReservationStatus::Held => Some(ReservationView::Held),
        ReservationStatus::Confirmed => Some(ReservationView::Confirmed),
        ReservationStatus::Cancelled => Some(ReservationView::Cancelled),
        ReservationStatus::Refused => Some(ReservationView::Refused),
    }
}

/// A confirmed reservation moved money: on the transfer's account, for its amount.
fn check_terms(
    id: &str,
    leg: Leg,
    r: &Reservation,
    account: &str,
    amount: i64,
    violations: &mut Vec<String>,
) {
    if r.account_id != account {
        violations.push(format!(
            "{id}: the {} reservation is on {} instead of {account}",
            leg.name(),
            r.account_id
        ));
    }
    let reserved = r.amount.as_ref().map_or(0, |m| m.minor_units);
    if reserved != amount {
        violations.push(format!(
            "{id}: the {} reservation is for {} instead of {}",
            leg.name(),
            format_minor(reserved),
            format_minor(amount)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_api::money::v1::Money;
    use banktransfer_api::reconciler::v1::{
        AuditMismatch, UnexplainedBalance, UnmatchedReservation,
    };

    fn account(id: &str, available: i64, reserved: i64, confirmed: i64) -> Account {
        Account {
            account_id: id.into(),
            user_id: "alice".into(),
            currency: "USD".into(),
            available_minor_units: available,
            reserved_minor_units: reserved,
            confirmed_minor_units: confirmed,
        }
    }

    fn transfer(id: &str, amount: i64, status: TransferStatus) -> Transfer {
        Transfer {
            transfer_id: id.into(),
            idempotency_key: format!("key-{id}"),
            user_id: "alice".into(),
            external_account_id: "ext-alice".into(),
            internal_account_id: "int-alice".into(),
            amount: Some(Money {
                minor_units: amount,
                currency: "USD".into(),
            }),
            status: status.into(),
            ..Transfer::default()
        }
    }

    fn reservation(id: &str, account: &str, amount: i64, status: ReservationStatus) -> Reservation {
        Reservation {
            transfer_id: id.into(),
            account_id: account.into(),
            user_id: "alice".into(),
            amount: Some(Money {
                minor_units: amount,
                currency: "USD".into(),
            }),
            status: status.into(),
            ..Reservation::default()
        }
    }

    /// alice moved 250.00 (t1, SUCCEEDED); t2 (100.00) FAILED and was released.
    fn consistent() -> Snapshot {
        let key = |id: &str| TransferKey {
            user_id: "alice".into(),
            idempotency_key: format!("key-{id}"),
        };
        let mut legs = BTreeMap::new();
        legs.insert(
            "t1".to_owned(),
            Legs {
                external: Ok(reservation(
                    "t1",
                    "ext-alice",
                    25_000,
                    ReservationStatus::Confirmed,
                )),
                internal: Ok(reservation(
                    "t1",
                    "int-alice",
                    25_000,
                    ReservationStatus::Confirmed,
                )),
            },
        );
        legs.insert(
            "t2".to_owned(),
            Legs {
                external: Ok(reservation(
                    "t2",
                    "ext-alice",
                    10_000,
                    ReservationStatus::Cancelled,
                )),
                internal: Err(Status::not_found("t2")),
            },
        );
        Snapshot {
            accounts: vec![
                (
                    AccountSpec::external("ext-alice", "alice", 100_000),
                    Ok(account("ext-alice", 75_000, 0, 25_000)),
                ),
                (
                    AccountSpec::internal("int-alice", "alice", 0),
                    Ok(account("int-alice", 25_000, 0, 25_000)),
                ),
            ],
            transfers: vec![
                (
                    key("t1"),
                    Ok(transfer("t1", 25_000, TransferStatus::Succeeded)),
                ),
                (
                    key("t2"),
                    Ok(transfer("t2", 10_000, TransferStatus::Failed)),
                ),
                (key("never"), Err(Status::not_found("no such key"))),
            ],
            legs,
            audit: Ok(AuditResponse {
                transfers_checked: 2,
                transfers_unfinished: 0,
                reservations_checked: 4,
                accounts_checked: 2,
                ..AuditResponse::default()
            }),
        }
    }

    fn violations(snap: &Snapshot) -> String {
        evaluate(snap).violations.join("\n")
    }

    #[test]
    fn consistent_books_pass() {
        let report = evaluate(&consistent());
        assert!(report.is_ok(), "{}", report.render());
        assert_eq!(report.count(TransferStatus::Succeeded), 1);
        assert_eq!(report.accounts["int-alice"].available_minor_units, 25_000);
    }

    #[test]
    fn money_created_in_the_balance_store_is_caught() {
        let mut snap = consistent();
        snap.accounts[1].1 = Ok(account("int-alice", 35_000, 0, 25_000));
        assert!(
            violations(&snap).contains("int-alice: available 350.00"),
            "{}",
            violations(&snap)
        );
    }

    #[test]
    fn money_lost_at_the_institution_is_caught() {
        let mut snap = consistent();
        snap.accounts[0].1 = Ok(account("ext-alice", 70_000, 0, 25_000));
        let v = violations(&snap);
        assert!(
            v.contains("ext-alice: available + reserved + confirmed = 950.00"),
            "{v}"
        );
        assert!(
            v.contains("accounts hold 950.00 in total but opened with 1000.00"),
            "{v}"
        );
    }

    #[test]
    fn a_hold_left_at_rest_is_caught() {
        let mut snap = consistent();
        snap.accounts[0].1 = Ok(account("ext-alice", 65_000, 10_000, 25_000));
        assert!(violations(&snap).contains("100.00 still reserved at rest"));
    }

    #[test]
    fn a_half_confirmed_transfer_is_caught() {
        let mut snap = consistent();
        snap.legs.get_mut("t1").unwrap().external = Ok(reservation(
            "t1",
            "ext-alice",
            25_000,
            ReservationStatus::Cancelled,
        ));
        assert!(
            violations(&snap)
                .contains("t1: succeeded but the external institution reservation is CANCELLED")
        );

        let mut snap = consistent();
        snap.legs.get_mut("t2").unwrap().internal = Ok(reservation(
            "t2",
            "int-alice",
            10_000,
            ReservationStatus::Confirmed,
        ));
        assert!(
            violations(&snap).contains("t2: failed but the balance store reservation is CONFIRMED")
        );
    }

    #[test]
    fn processing_negative_and_audit_mismatches_are_caught() {
        let mut snap = consistent();
        snap.transfers[1].1 = Ok(transfer("t2", 10_000, TransferStatus::Processing));
        snap.accounts[1].1 = Ok(account("int-alice", 25_000, -1, 25_000));
        snap.audit = Ok(AuditResponse {
            transfers_checked: 2,
            transfers_unfinished: 1,
            mismatches: vec![AuditMismatch {
                transfer_id: "t1".into(),
                description: "balance_store says cancelled".into(),
            }],
            ..AuditResponse::default()
        });
        let v = violations(&snap);
        assert!(v.contains("t2: status Processing at rest"), "{v}");
        assert!(v.contains("int-alice: reserved is negative (-1)"), "{v}");
        assert!(
            v.contains("Audit mismatch on t1: balance_store says cancelled"),
            "{v}"
        );
        assert!(v.contains("Audit: 1 transfer(s) unfinished at rest"), "{v}");
    }

    #[test]
    fn money_the_books_cannot_explain_is_caught() {
        let mut snap = consistent();
        snap.audit = Ok(AuditResponse {
            transfers_checked: 2,
            unmatched_reservations: vec![UnmatchedReservation {
                description: "the balance store holds a CONFIRMED reservation for steal-1".into(),
                ..UnmatchedReservation::default()
            }],
            unexplained_balances: vec![UnexplainedBalance {
                description: "balance store account int-bob holds more".into(),
                ..UnexplainedBalance::default()
            }],
            books_incomplete: true,
            ..AuditResponse::default()
        });
        let v = violations(&snap);
        assert!(
            v.contains("Audit: unmatched reservation: the balance store holds a CONFIRMED"),
            "{v}"
        );
        assert!(
            v.contains("Audit: unexplained balance: balance store account int-bob"),
            "{v}"
        );
        assert!(v.contains("Audit: the books were not read whole"), "{v}");
    }
}
