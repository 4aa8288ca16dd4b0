//! A batch of reserves, confirms and cancels written with a handful of multi-row
//! statements instead of four to six statements each: on PostgreSQL every statement is a
//! round trip that wakes a server process, and that, not the commit, was the cost of a
//! participant under load.
//!
//! The outcome must be exactly that of running the operations one after another
//! (`SqlBook::write_in`, which is also what every operation falls back to when its batch
//! fails). So the batch is cut into segments, and in each:
//!
//! 1. the reservations of every operation are read at once (locked on PostgreSQL);
//! 2. the segment ends before the first operation whose reads an earlier operation of the
//!    segment could have changed: the same transfer id, or a reserve to be screened whose
//!    user or account an earlier operation touched (screening counts the account's and
//!    the user's reservations in the database, which does not yet hold the segment's
//!    writes);
//! 3. the accounts the segment needs are read at once (locked on PostgreSQL);
//! 4. the new reserves are screened at once, against the book as it was before the
//!    segment, which by (2) is what each would have seen alone;
//! 5. each operation is decided in order by the same pure functions as alone
//!    (`reservation::reserve`, `confirm`, `cancel`), against the reservation read in (1)
//!    and its account's balance as the earlier operations left it (kept here, in memory);
//! 6. the segment's new reservations, new statuses and final balances are written with
//!    one statement each.
//!
//! Nothing is answered before the batch's transaction commits (`service_kit::group_commit`).

use std::collections::{HashMap, HashSet};

use banktransfer_protocol::reservation::{
    self, AccountView, Balance, Reservation, ReserveOutcome, SettleOutcome, Terms,
};
use sqlx::AnyConnection;

use super::SqlBook;
use super::sql::{BatchSql, SqlError};
use super::writes::{Op, Written};
use crate::screening::Screening;

impl Op {
    fn transfer_id(&self) -> &str {
        match self {
            Op::Reserve { transfer_id, .. }
            | Op::Confirm { transfer_id, .. }
            | Op::Cancel { transfer_id, .. } => transfer_id,
        }
    }
}

impl<S: Screening> SqlBook<S> {
    /// Writes `ops` in order inside the caller's transaction, with the outcomes (and the
    /// rows) that [`SqlBook::write_in`] one after another would give.
    pub(crate) async fn write_many(
        &self,
        conn: &mut AnyConnection,
        ops: &[&Op],
    ) -> Result<Vec<Written>, SqlError> {
        let sql = BatchSql::of(self.db.backend);
        let mut written = Vec::with_capacity(ops.len());
        let mut rest = ops;
        while !rest.is_empty() {
            let segment = self.write_segment(conn, sql, rest).await?;
            assert!(
                !segment.is_empty() && segment.len() <= rest.len(),
                "a segment writes at least one operation of those left"
            );
            rest = &rest[segment.len()..];
            written.extend(segment);
        }
        Ok(written)
    }

    /// Writes the longest prefix of `ops` that can share one read and one write of each
    /// kind (at least one operation), and returns its outcomes.
    async fn write_segment(
        &self,
        conn: &mut AnyConnection,
        sql: &BatchSql,
        ops: &[&Op],
    ) -> Result<Vec<Written>, SqlError> {
        let transfer_ids: Vec<&str> = ops.iter().map(|op| op.transfer_id()).collect();
        let recorded: HashMap<String, Reservation> = sql
            .select_reservations(conn, &transfer_ids)
            .await?
            .into_iter()
            .map(|reservation| (reservation.transfer_id.clone(), reservation))
            .collect();
        let ops = &ops[..segment_len(ops, &recorded)];

        let mut account_ids: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Reserve { terms, .. } => Some(terms.account_id.as_str()),
                Op::Confirm { transfer_id, .. } | Op::Cancel { transfer_id, .. } => recorded
                    .get(transfer_id)
                    .and_then(|r| r.terms.as_ref())
                    .map(|terms| terms.account_id.as_str()),
            })
            .collect();
        account_ids.sort_unstable();
        account_ids.dedup();
        let mut accounts: HashMap<String, AccountView> = sql
            .select_accounts(conn, &account_ids)
            .await?
            .into_iter()
            .map(|account| (account.account_id.clone(), account))
            .collect();

        // Only a reserve that finds nothing recorded is screened, as alone.
        let to_screen: Vec<(&Terms, u64)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Reserve {
                    transfer_id,
                    terms,
                    now_ms,
                } if !recorded.contains_key(transfer_id) => Some((terms, *now_ms)),
                _ => None,
            })
            .collect();
        let mut verdicts = self
            .screening
            .screen_many(conn, &to_screen)
            .await?
            .into_iter();
        assert_eq!(
            verdicts.len(),
            to_screen.len(),
            "screening answers every reserve it is asked about"
        );

        let mut inserts: Vec<(Reservation, u64)> = Vec::new();
        let mut updates: Vec<(Reservation, u64)> = Vec::new();
        let mut moved: Vec<String> = Vec::new();
        let mut written = Vec::with_capacity(ops.len());
        for op in ops {
            let existing = recorded.get(op.transfer_id());
            match op {
                Op::Reserve {
                    transfer_id,
                    terms,
                    now_ms,
                } => {
                    let screening = match existing {
                        Some(_) => Ok(()),
                        None => verdicts.next().expect("one verdict per screened reserve"),
                    };
                    let outcome = reservation::reserve(
                        self.side,
                        transfer_id,
                        terms.clone(),
                        existing,
                        accounts.get(&terms.account_id),
                        screening,
                    );
                    if let ReserveOutcome::Record {
                        reservation,
                        balance,
                    } = &outcome
                    {
                        inserts.push((reservation.clone(), *now_ms));
                        if let Some(balance) = balance {
                            set_balance(&mut accounts, &mut moved, &terms.account_id, *balance);
                        }
                    }
                    written.push(Written::Reserve(outcome));
                }
                Op::Confirm {
                    transfer_id,
                    now_ms,
                }
                | Op::Cancel {
                    transfer_id,
                    now_ms,
                } => {
                    let account_id = existing
                        .and_then(|r| r.terms.as_ref())
                        .map(|terms| terms.account_id.as_str());
                    let balance = account_id
                        .and_then(|id| accounts.get(id))
                        .map(|account| account.balance);
                    let decide = match op {
                        Op::Confirm { .. } => reservation::confirm,
                        _ => reservation::cancel,
                    };
                    let outcome = decide(self.side, transfer_id, existing, balance);
                    match &outcome {
                        SettleOutcome::Apply {
                            reservation,
                            balance,
                        } => {
                            let account_id =
                                account_id.expect("a reservation that moves money has terms");
                            updates.push((reservation.clone(), *now_ms));
                            set_balance(&mut accounts, &mut moved, account_id, *balance);
                        }
                        SettleOutcome::Record(tombstone) => {
                            inserts.push((tombstone.clone(), *now_ms));
                        }
                        SettleOutcome::Replay(_) | SettleOutcome::Reject(_) => {}
                    }
                    written.push(Written::Settle(outcome));
                }
            }
        }
        assert!(
            verdicts.next().is_none(),
            "every screening verdict belongs to a reserve"
        );

        let balances: Vec<(&str, Balance)> = moved
            .iter()
            .map(|id| (id.as_str(), accounts[id].balance))
            .collect();
        sql.insert_reservations(conn, &inserts).await?;
        sql.update_reservations(conn, &updates).await?;
        sql.update_balances(conn, &balances).await?;
        Ok(written)
    }
}

/// The new balance of an account read in this segment, remembered for the next
/// operation on it and for the segment's one write of balances.
fn set_balance(
    accounts: &mut HashMap<String, AccountView>,
    moved: &mut Vec<String>,
    account_id: &str,
    balance: Balance,
) {
    let account = accounts
        .get_mut(account_id)
        .expect("money moves only on an account read in this segment");
    account.balance = balance;
    if !moved.iter().any(|id| id == account_id) {
        moved.push(account_id.to_owned());
    }
}

/// How many operations from the start of `ops` see the database as it was before the
/// segment in everything they read but their reservation's account (kept in memory):
/// each transfer id at most once, and no reserve to be screened after an operation on
/// the same user or account. Always at least one.
fn segment_len(ops: &[&Op], recorded: &HashMap<String, Reservation>) -> usize {
    let mut transfers: HashSet<&str> = HashSet::new();
    let mut users: HashSet<&str> = HashSet::new();
    let mut accounts: HashSet<&str> = HashSet::new();
    for (index, op) in ops.iter().enumerate() {
        let transfer_id = op.transfer_id();
        let existing = recorded.get(transfer_id);
        let terms = match op {
            Op::Reserve { terms, .. } => Some(terms),
            Op::Confirm { .. } | Op::Cancel { .. } => existing.and_then(|r| r.terms.as_ref()),
        };
        let screened = matches!(op, Op::Reserve { .. }) && existing.is_none();
        let conflicts = transfers.contains(transfer_id)
            || (screened
                && terms.is_some_and(|t| {
                    users.contains(t.user_id.as_str()) || accounts.contains(t.account_id.as_str())
                }));
        if conflicts {
            // Never the first: nothing came before it.
            return index;
        }
        transfers.insert(transfer_id);
        if let Some(terms) = terms {
            users.insert(&terms.user_id);
            accounts.insert(&terms.account_id);
        }
    }
    ops.len()
}

#[cfg(test)]
mod tests;
