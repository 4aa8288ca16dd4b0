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
//! - the reconciler's Audit reports no mismatch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use banktransfer_proto::gateway::v1::{Transfer, TransferStatus};
use banktransfer_proto::reconciler::v1::{AuditRequest, AuditResponse};
use banktransfer_proto::reservation::v1::{Account, Reservation, ReservationStatus};
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

struct Snapshot {
    accounts: Vec<(AccountSpec, Result<Account, Status>)>,
    transfers: Vec<(TransferKey, Result<Transfer, Status>)>,
    audit: Result<AuditResponse, Status>,
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
            Side::Internal => clients.internal_account(&spec.account_id).await,
        };
        read_accounts.push((spec.clone(), account));
    }
    let mut read_transfers = Vec::new();
    for key in keys {
        read_transfers.push((key.clone(), transfers.get_by_key(key).await));
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
        audit,
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
                Err(status) if status.code() == Code::NotFound => {}
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
    let snap = loop {
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

    let mut summary = String::new();
    let mut read_accounts = BTreeMap::new();

    // Transfers, with both participants' reservations.
    let mut known: Vec<(TransferKey, Transfer)> = Vec::new();
    let _ = writeln!(summary, "transfers ({}):", snap.transfers.len());
    for (key, transfer) in &snap.transfers {
        let t = match transfer {
            Ok(t) => t,
            Err(status) if status.code() == Code::NotFound => {
                let _ = writeln!(
                    summary,
                    "  (never recorded) {}/{}",
                    key.user_id, key.idempotency_key
                );
                continue;
            }
            Err(status) => {
                violations.push(format!("GetTransfer {key:?}: {status}"));
                continue;
            }
        };
        let ext = clients.external_reservation(&t.transfer_id).await;
        let int = clients.internal_reservation(&t.transfer_id).await;
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
            Side::Internal => {
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

/// Both legs confirmed, or neither.
fn check_legs(
    t: &Transfer,
    amount: i64,
    ext: &Result<Reservation, Status>,
    int: &Result<Reservation, Status>,
    violations: &mut Vec<String>,
) {
    let id = &t.transfer_id;
    if !matches!(
        t.status(),
        TransferStatus::Succeeded | TransferStatus::Failed
    ) {
        violations.push(format!("{id}: status {:?} at rest", t.status()));
        return;
    }
    for (leg, reservation, account) in [
        ("external", ext, &t.external_account_id),
        ("balance store", int, &t.internal_account_id),
    ] {
        match (t.status(), reservation) {
            (_, Err(status)) if status.code() != Code::NotFound => {
                violations.push(format!("{id}: GetReservation on the {leg}: {status}"));
            }
            (TransferStatus::Succeeded, Ok(r)) => {
                if r.status() != ReservationStatus::Confirmed {
                    violations.push(format!(
                        "{id}: SUCCEEDED but the {leg} reservation is {:?}",
                        r.status()
                    ));
                }
                if &r.account_id != account {
                    violations.push(format!(
                        "{id}: the {leg} reservation is on {} instead of {account}",
                        r.account_id
                    ));
                }
                let reserved = r.amount.as_ref().map_or(0, |m| m.minor_units);
                if reserved != amount {
                    violations.push(format!(
                        "{id}: the {leg} reservation is for {} instead of {}",
                        format_minor(reserved),
                        format_minor(amount)
                    ));
                }
            }
            (TransferStatus::Succeeded, Err(_)) => {
                violations.push(format!("{id}: SUCCEEDED but the {leg} has no reservation"));
            }
            (_, Ok(r)) => {
                if matches!(
                    r.status(),
                    ReservationStatus::Confirmed | ReservationStatus::Held
                ) {
                    violations.push(format!(
                        "{id}: FAILED but the {leg} reservation is {:?}",
                        r.status()
                    ));
                }
            }
            (_, Err(_)) => {}
        }
    }
}
