//! The ledger check after every run: wait until the system is at rest (no hold left on any
//! of the load's accounts, every transfer whose answer the client did not see as final is
//! final, the reconciler's audit finds nothing unfinished; bounded), then check that
//! - every account conserves money (external: available + reserved + confirmed = opening;
//!   balance store: available = opening + confirmed; the statements' reservation totals
//!   explain both), nothing is held at rest;
//! - per user, the SUCCEEDED sum the client saw (answers, plus a lookup of every transfer
//!   whose answer was not final) equals what the external institution debited and what
//!   the balance store credited over the run (differences of two snapshots, so a system
//!   with history, or several runs on one cluster, are judged on what this run moved);
//! - the reconciler's Audit reports no mismatch, no unmatched reservation and no
//!   unexplained balance.
//!
//! The books are read with ListAccounts (pages of 1,000 statements) rather than one
//! GetTransfer and two GetReservation per transfer, so a check costs seconds after a run
//! of a hundred thousand transfers. `--full-check` adds the e2e harness's own invariant
//! check over every transfer (tool's own cluster only).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use banktransfer_api::gateway::v1::{Transfer, TransferStatus};
use banktransfer_api::reconciler::v1::{AuditRequest, AuditResponse};
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_api::reservation::v1::{AccountStatement, ListAccountsRequest};
use serde::Serialize;
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::transport::Channel;

use crate::target::{READ_TIMEOUT, Target};
use crate::users;

/// Statements per ListAccounts page (the server's maximum).
const PAGE_SIZE: u32 = 1_000;
/// Bound on pages read from one book (a million accounts).
const PAGES_MAX: usize = 1_000;
/// Lookups of unresolved transfers running at once.
const LOOKUPS_IN_FLIGHT_MAX: usize = 16;
/// Attempts per lookup when the gateway answers with an error.
const LOOKUP_ATTEMPTS_MAX: u32 = 5;

/// What the client knows per user: the SUCCEEDED sum, and the keys whose answer was not
/// final (an error, a deadline, PROCESSING), to be looked up at rest.
#[derive(Debug)]
pub struct ClientBook {
    users: Vec<Mutex<UserBook>>,
    next_sequence: AtomicU64,
    keep_keys: bool,
}

#[derive(Debug, Default, Clone)]
struct UserBook {
    succeeded_minor: i64,
    unresolved: Vec<String>,
    /// Every key, for the harness's full check.
    keys: Vec<String>,
}

impl ClientBook {
    pub fn new(users: u32, keep_keys: bool) -> ClientBook {
        ClientBook {
            users: (0..users)
                .map(|_| Mutex::new(UserBook::default()))
                .collect(),
            next_sequence: AtomicU64::new(0),
            keep_keys,
        }
    }

    /// The sequence number of the next transfer (runs on one book continue round-robin).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence.fetch_add(1, Ordering::Relaxed)
    }

    /// Records what the client finally saw for `key` (`None`: no transfer in the answer).
    pub fn settle(&self, user: u32, key: String, seen: Option<&Transfer>) {
        let mut book = self.users[user as usize].lock().expect("user book");
        if self.keep_keys {
            book.keys.push(key.clone());
        }
        match seen.map(Transfer::status) {
            Some(TransferStatus::Succeeded) => {
                book.succeeded_minor += seen
                    .and_then(|t| t.amount.as_ref())
                    .map_or(0, |m| m.minor_units);
            }
            Some(TransferStatus::Failed) => {}
            _ => book.unresolved.push(key),
        }
    }

    /// Records that `key`, settled earlier without a final answer, was found SUCCEEDED at
    /// rest. Its key is already kept: keeping it again would count it twice in the full
    /// check.
    pub fn resolve_succeeded(&self, user: u32, found: &Transfer) {
        let mut book = self.users[user as usize].lock().expect("user book");
        book.succeeded_minor += found.amount.as_ref().map_or(0, |m| m.minor_units);
    }

    pub fn succeeded_minor(&self) -> Vec<i64> {
        self.users
            .iter()
            .map(|u| u.lock().expect("user book").succeeded_minor)
            .collect()
    }

    pub fn unresolved_count(&self) -> usize {
        self.users
            .iter()
            .map(|u| u.lock().expect("user book").unresolved.len())
            .sum()
    }

    fn take_unresolved(&self) -> Vec<(u32, String)> {
        let mut all = Vec::new();
        for (index, u) in self.users.iter().enumerate() {
            let keys = std::mem::take(&mut u.lock().expect("user book").unresolved);
            let index = u32::try_from(index).expect("users fit in u32");
            all.extend(keys.into_iter().map(|k| (index, k)));
        }
        all
    }

    /// Every key asked for (only with `keep_keys`), by user index.
    pub fn keys(&self) -> Vec<(u32, String)> {
        let mut all = Vec::new();
        for (index, u) in self.users.iter().enumerate() {
            let index = u32::try_from(index).expect("users fit in u32");
            let book = u.lock().expect("user book");
            all.extend(book.keys.iter().map(|k| (index, k.clone())));
        }
        all
    }
}

/// What a check compares with: both books and the client's SUCCEEDED sums, read before
/// the run (the client's sums are cumulative over the runs on one book).
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub books: Books,
    pub client_minor: Vec<i64>,
}

impl Baseline {
    pub async fn read(target: &Target, book: &ClientBook) -> Result<Baseline, String> {
        Ok(Baseline {
            books: read_books(target).await?,
            client_minor: book.succeeded_minor(),
        })
    }

    /// What the client saw SUCCEEDED per user since this baseline.
    pub fn client_since(&self, now: &[i64]) -> Vec<i64> {
        now.iter()
            .enumerate()
            .map(|(i, n)| n - self.client_minor.get(i).copied().unwrap_or(0))
            .collect()
    }
}

/// Both participants' books: every account's statement, by account id.
#[derive(Clone, Debug, Default)]
pub struct Books {
    pub external: BTreeMap<String, AccountStatement>,
    pub balance_store: BTreeMap<String, AccountStatement>,
}

pub async fn read_books(target: &Target) -> Result<Books, String> {
    Ok(Books {
        external: read_book(target.external_book.clone())
            .await
            .map_err(|e| format!("external institution: {e}"))?,
        balance_store: read_book(target.balance_store_book.clone())
            .await
            .map_err(|e| format!("balance store: {e}"))?,
    })
}

async fn read_book(
    mut client: ReservationServiceClient<Channel>,
) -> Result<BTreeMap<String, AccountStatement>, String> {
    let mut book = BTreeMap::new();
    let mut page_token = String::new();
    for _ in 0..PAGES_MAX {
        let mut request = tonic::Request::new(ListAccountsRequest {
            page_size: PAGE_SIZE,
            page_token: page_token.clone(),
        });
        request.set_timeout(READ_TIMEOUT);
        let page = client
            .list_accounts(request)
            .await
            .map_err(|s| format!("ListAccounts: {s}"))?
            .into_inner();
        for statement in page.accounts {
            if let Some(account) = &statement.account {
                book.insert(account.account_id.clone(), statement);
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(book);
        }
        page_token = page.next_page_token;
    }
    Err(format!("more than {PAGES_MAX} pages of accounts"))
}

/// `None` when none of the load's accounts holds anything, else why not.
pub fn unrest(books: &Books, users: u32) -> Option<String> {
    for index in 0..users {
        let user = users::user_id(index);
        for (book, id) in [
            (&books.external, users::external_account(&user)),
            (&books.balance_store, users::internal_account(&user)),
        ] {
            match book.get(&id).and_then(|s| s.account.as_ref()) {
                None => return Some(format!("account {id} missing")),
                Some(a) if a.reserved_minor_units != 0 => {
                    return Some(format!("{id} still holds {}", a.reserved_minor_units));
                }
                Some(_) => {}
            }
        }
    }
    None
}

/// Every account of `books` conserves money and holds nothing at rest.
pub fn conservation(books: &Books) -> Vec<String> {
    let mut violations = Vec::new();
    for (side, book) in [
        ("external", &books.external),
        ("balance store", &books.balance_store),
    ] {
        for (id, statement) in book {
            let Some(a) = &statement.account else {
                violations.push(format!("{side} {id}: a statement without its account"));
                continue;
            };
            if a.reserved_minor_units != 0 {
                violations.push(format!(
                    "{side} {id}: {} held at rest",
                    a.reserved_minor_units
                ));
            }
            if a.available_minor_units < 0 || a.confirmed_minor_units < 0 {
                violations.push(format!("{side} {id}: a negative balance ({a:?})"));
            }
            if statement.reservations_held_minor_units != a.reserved_minor_units
                || statement.reservations_confirmed_minor_units != a.confirmed_minor_units
            {
                violations.push(format!(
                    "{side} {id}: reservations held {} / confirmed {} but the account shows {} / {}",
                    statement.reservations_held_minor_units,
                    statement.reservations_confirmed_minor_units,
                    a.reserved_minor_units,
                    a.confirmed_minor_units
                ));
            }
            let Some(opening) = statement.opening_minor_units else {
                continue;
            };
            let explained = if side == "external" {
                a.available_minor_units + a.reserved_minor_units + a.confirmed_minor_units
                    == opening
            } else {
                a.available_minor_units == opening + a.confirmed_minor_units
            };
            if !explained {
                violations.push(format!(
                    "{side} {id}: opened with {opening} but available {} reserved {} confirmed {}",
                    a.available_minor_units, a.reserved_minor_units, a.confirmed_minor_units
                ));
            }
        }
    }
    violations
}

/// Per user: what the client saw SUCCEEDED equals what each bank moved between the two
/// snapshots. Returns the violations and the totals (client, debited, credited).
pub fn per_user(before: &Books, after: &Books, client_minor: &[i64]) -> (Vec<String>, [i64; 3]) {
    let confirmed = |book: &BTreeMap<String, AccountStatement>, id: &str| {
        book.get(id)
            .and_then(|s| s.account.as_ref())
            .map_or(0, |a| a.confirmed_minor_units)
    };
    let mut violations = Vec::new();
    let mut totals = [0i64; 3];
    for (index, client) in client_minor.iter().enumerate() {
        let user = users::user_id(u32::try_from(index).expect("users fit in u32"));
        let ext = users::external_account(&user);
        let int = users::internal_account(&user);
        let debited = confirmed(&after.external, &ext) - confirmed(&before.external, &ext);
        let credited =
            confirmed(&after.balance_store, &int) - confirmed(&before.balance_store, &int);
        totals[0] += client;
        totals[1] += debited;
        totals[2] += credited;
        if debited != *client || credited != *client {
            violations.push(format!(
                "{user}: the client saw {client} SUCCEEDED but the external institution debited \
                 {debited} and the balance store credited {credited}"
            ));
        }
    }
    (violations, totals)
}

/// The reconciler's audit, as violations and notes.
pub fn audit_findings(audit: &AuditResponse) -> (Vec<String>, Vec<String>) {
    let mut violations = Vec::new();
    let mut notes = Vec::new();
    for m in &audit.mismatches {
        violations.push(format!(
            "Audit mismatch on {}: {}",
            m.transfer_id, m.description
        ));
    }
    for u in &audit.unmatched_reservations {
        violations.push(format!("Audit: unmatched reservation: {}", u.description));
    }
    for u in &audit.unexplained_balances {
        violations.push(format!("Audit: unexplained balance: {}", u.description));
    }
    if audit.transfers_unfinished > 0 {
        violations.push(format!(
            "Audit: {} transfer(s) unfinished at rest",
            audit.transfers_unfinished
        ));
    }
    if audit.books_incomplete {
        // The audit reads a bounded number of pages; the per-user comparison above
        // covers every account whatever the book's size.
        notes.push("the reconciler's audit did not read the books whole (too large)".to_owned());
    }
    (violations, notes)
}

/// The result of a ledger check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LedgerReport {
    pub ok: bool,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
    pub rest_wait_ms: u64,
    /// Transfers whose answer was not final, looked up at rest.
    pub looked_up: u64,
    pub looked_up_succeeded: u64,
    pub looked_up_failed: u64,
    pub never_recorded: u64,
    /// Still not final at the end of the wait: lost to the client.
    pub unresolved: u64,
    pub client_succeeded_minor: i64,
    pub external_debited_minor: i64,
    pub balance_store_credited_minor: i64,
    pub audit_transfers_checked: u32,
    pub full_check: Option<bool>,
}

/// Waits for rest (at most `rest_timeout`), resolves the client's open keys, and checks.
pub async fn check(
    target: &Arc<Target>,
    book: &ClientBook,
    before: &Baseline,
    rest_timeout: Duration,
) -> LedgerReport {
    let started = Instant::now();
    let mut report = LedgerReport::default();
    let mut pending = book.take_unresolved();
    let (after, audit) = loop {
        pending = resolve(target, book, pending, &mut report).await;
        let books = read_books(target).await;
        let why = match &books {
            Err(e) => Some(e.clone()),
            Ok(_) if !pending.is_empty() => {
                Some(format!("{} transfer(s) not final yet", pending.len()))
            }
            Ok(b) => unrest(b, target.users()),
        };
        let why = match why {
            Some(why) => Some(why),
            None => match audit(target).await {
                Ok(a) if a.transfers_unfinished == 0 => {
                    break (books.unwrap_or_default(), Some(a));
                }
                Ok(a) => Some(format!("{} transfer(s) unfinished", a.transfers_unfinished)),
                Err(e) => Some(e),
            },
        };
        let why = why.unwrap_or_default();
        if started.elapsed() >= rest_timeout {
            report
                .violations
                .push(format!("not at rest after {rest_timeout:?}: {why}"));
            break (books.unwrap_or_default(), audit(target).await.ok());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.rest_wait_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.unresolved = pending.len() as u64;
    if !pending.is_empty() {
        report.violations.push(format!(
            "{} transfer(s) still not final (lost to the client), e.g. {:?}",
            pending.len(),
            &pending[..pending.len().min(3)]
        ));
    }
    report.violations.extend(conservation(&after));
    let client = before.client_since(&book.succeeded_minor());
    let (violations, totals) = per_user(&before.books, &after, &client);
    let shown = violations.len().min(20);
    if violations.len() > shown {
        report.notes.push(format!(
            "{} per-user violations, first {shown} shown",
            violations.len()
        ));
    }
    report.violations.extend(violations.into_iter().take(shown));
    [
        report.client_succeeded_minor,
        report.external_debited_minor,
        report.balance_store_credited_minor,
    ] = totals;
    match audit {
        Some(a) => {
            report.audit_transfers_checked = a.transfers_checked;
            let (violations, notes) = audit_findings(&a);
            report.violations.extend(violations);
            report.notes.extend(notes);
        }
        None => report
            .violations
            .push("the reconciler's Audit failed".to_owned()),
    }
    report.ok = report.violations.is_empty();
    report
}

async fn audit(target: &Target) -> Result<AuditResponse, String> {
    let mut request = tonic::Request::new(AuditRequest { limit: 0 });
    request.set_timeout(Duration::from_secs(60));
    target
        .reconciler
        .clone()
        .audit(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("Audit: {s}"))
}

/// Looks up each open key; returns those still not final (PROCESSING, or errors).
async fn resolve(
    target: &Arc<Target>,
    book: &ClientBook,
    pending: Vec<(u32, String)>,
    report: &mut LedgerReport,
) -> Vec<(u32, String)> {
    let gate = Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT_MAX));
    let mut lookups = tokio::task::JoinSet::new();
    for (user, key) in pending {
        let target = Arc::clone(target);
        let gate = Arc::clone(&gate);
        lookups.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            let mut last = None;
            for _ in 0..LOOKUP_ATTEMPTS_MAX {
                match target.get(user, &key).await {
                    Ok(t) => {
                        last = Some(Ok(t));
                        break;
                    }
                    Err(s) if s.code() == Code::NotFound => {
                        last = Some(Err(true));
                        break;
                    }
                    Err(_) => {
                        last = Some(Err(false));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (user, key, last)
        });
    }
    let mut still = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let (user, key, last) = joined.expect("a lookup task does not panic");
        match last {
            Some(Ok(t)) if t.status() == TransferStatus::Succeeded => {
                report.looked_up += 1;
                report.looked_up_succeeded += 1;
                book.resolve_succeeded(user, &t);
            }
            Some(Ok(t)) if t.status() == TransferStatus::Failed => {
                report.looked_up += 1;
                report.looked_up_failed += 1;
            }
            Some(Err(true)) => {
                report.looked_up += 1;
                report.never_recorded += 1;
            }
            _ => still.push((user, key)),
        }
    }
    still
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_api::reservation::v1::Account;

    fn statement(
        id: &str,
        opening: i64,
        available: i64,
        reserved: i64,
        confirmed: i64,
    ) -> AccountStatement {
        AccountStatement {
            account: Some(Account {
                account_id: id.into(),
                user_id: "u".into(),
                currency: "USD".into(),
                available_minor_units: available,
                reserved_minor_units: reserved,
                confirmed_minor_units: confirmed,
            }),
            opening_minor_units: Some(opening),
            reservations_held_minor_units: reserved,
            reservations_confirmed_minor_units: confirmed,
        }
    }

    /// Two users; user 0 has moved `moved0`, user 1 `moved1` in total.
    fn books(moved0: i64, moved1: i64) -> Books {
        let mut b = Books::default();
        for (i, moved) in [(0, moved0), (1, moved1)] {
            let user = users::user_id(i);
            let ext = users::external_account(&user);
            let int = users::internal_account(&user);
            b.external
                .insert(ext.clone(), statement(&ext, 1000, 1000 - moved, 0, moved));
            b.balance_store
                .insert(int.clone(), statement(&int, 0, moved, 0, moved));
        }
        b
    }

    #[test]
    fn what_the_client_saw_matches_what_both_banks_moved() {
        let before = books(5, 0);
        let after = books(8, 2);
        assert!(conservation(&after).is_empty());
        let (v, totals) = per_user(&before, &after, &[3, 2]);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(totals, [5, 5, 5]);
        // The client believes one more cent SUCCEEDED for user 1 than the banks moved.
        let (v, _) = per_user(&before, &after, &[3, 3]);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].starts_with("load-00001: the client saw 3 SUCCEEDED"),
            "{v:?}"
        );
        // A credit without its debit.
        let mut skewed = after.clone();
        skewed.balance_store.insert(
            "int-load-00000".into(),
            statement("int-load-00000", 0, 9, 0, 9),
        );
        let (v, _) = per_user(&before, &skewed, &[3, 2]);
        assert!(v[0].contains("credited 4"), "{v:?}");
    }

    #[test]
    fn held_or_unexplained_money_is_caught() {
        let mut b = books(8, 2);
        assert_eq!(unrest(&b, 2), None);
        b.external.insert(
            "ext-load-00001".into(),
            statement("ext-load-00001", 1000, 997, 1, 2),
        );
        assert!(
            unrest(&b, 2)
                .unwrap()
                .contains("ext-load-00001 still holds 1")
        );
        let v = conservation(&b);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("held at rest"));
        b.balance_store.insert(
            "int-load-00000".into(),
            statement("int-load-00000", 0, 9, 0, 8),
        );
        let v = conservation(&b);
        assert!(
            v.iter()
                .any(|v| v.contains("opened with 0 but available 9")),
            "{v:?}"
        );
        assert!(unrest(&Books::default(), 1).unwrap().contains("missing"));
    }

    #[test]
    fn the_client_book_settles_and_keeps_open_keys() {
        let book = ClientBook::new(2, true);
        let t = |status: TransferStatus| Transfer {
            status: status.into(),
            amount: Some(crate::target::usd(1)),
            ..Transfer::default()
        };
        book.settle(0, "a".into(), Some(&t(TransferStatus::Succeeded)));
        book.settle(0, "b".into(), Some(&t(TransferStatus::Failed)));
        book.settle(1, "c".into(), Some(&t(TransferStatus::Processing)));
        book.settle(1, "d".into(), None);
        assert_eq!(book.succeeded_minor(), vec![1, 0]);
        assert_eq!(book.unresolved_count(), 2);
        assert_eq!(book.keys().len(), 4);
        assert_eq!(
            book.take_unresolved(),
            vec![(1, "c".to_owned()), (1, "d".to_owned())]
        );
        assert_eq!(book.unresolved_count(), 0);
        // "c" found SUCCEEDED at rest: counted, and its key still kept once.
        book.resolve_succeeded(1, &t(TransferStatus::Succeeded));
        assert_eq!(book.succeeded_minor(), vec![1, 1]);
        assert_eq!(book.keys().len(), 4);
        assert_eq!((book.next_sequence(), book.next_sequence()), (0, 1));
        // A later run is judged on what it added.
        let baseline = Baseline {
            books: Books::default(),
            client_minor: vec![1, 0],
        };
        book.settle(1, "e".into(), Some(&t(TransferStatus::Succeeded)));
        assert_eq!(baseline.client_since(&book.succeeded_minor()), vec![0, 2]);
    }

    #[test]
    fn audit_findings_are_violations_except_a_partial_read() {
        let (v, n) = audit_findings(&AuditResponse {
            transfers_unfinished: 2,
            books_incomplete: true,
            ..AuditResponse::default()
        });
        assert_eq!(
            v,
            vec!["Audit: 2 transfer(s) unfinished at rest".to_owned()]
        );
        assert_eq!(n.len(), 1);
    }
}
