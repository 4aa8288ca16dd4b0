//! The audit, in two halves:
//! - the legs: compare the coordinator's record of recent transfers with what both
//!   participants hold for each. [`check`] applies the protocol's legs rule
//!   (`banktransfer_protocol::audit`); [`audit`] gathers the reservations, a bounded
//!   number of reads at a time;
//! - the books ([`crate::books`]): every reservation and every account both participants
//!   hold, explained by the log and by their opening balances; this half finds money
//!   that moved with no transfer at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use banktransfer_protocol::audit;
use banktransfer_protocol::transfer::{Leg, RecordedState};
use coordinator::participants::{CallError, Participants, ReservationView};
use coordinator::store::{StoreError, TransferRecord, TransferStore};
use service_kit::metrics;
use tokio::task::JoinSet;

use crate::books::{self, BookReading, BooksError, BooksReport};

/// Transfers whose reservations are read at once.
const READS_IN_FLIGHT_MAX: usize = 16;

/// One transfer against its two reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Not final yet: not a mismatch, only not settled.
    pub unfinished: bool,
    pub mismatches: Vec<String>,
}

/// The protocol's money-audit rule (`banktransfer_protocol::audit`), with whether the
/// transfer is still under way.
pub fn check(state: RecordedState, legs: [(Leg, ReservationView); 2]) -> Verdict {
    Verdict {
        unfinished: !state.is_final(),
        mismatches: audit::mismatches(state, legs)
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub checked: u32,
    pub unfinished: u32,
    /// (transfer_id, description)
    pub mismatches: Vec<(String, String)>,
    /// What the books rule found in both participants' whole books.
    pub books: BooksReport,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A reservation could not be read: the audit would be guessing.
    #[error("cannot read transfer {transfer_id}'s reservation: {error}")]
    Participant {
        transfer_id: String,
        error: CallError,
    },
    #[error(transparent)]
    Books(#[from] BooksError),
}

/// Audits the `limit` most recent transfers, then both participants' whole books (read
/// as `reading` says).
pub async fn audit<S: TransferStore, P: Participants>(
    store: &S,
    participants: &Arc<P>,
    limit: u32,
    reading: BookReading,
) -> Result<AuditReport, AuditError> {
    let call_timeout = reading.call_timeout;
    let records = store.recent(limit).await?;
    let logged: BTreeMap<_, _> = records
        .iter()
        .map(|record| (record.transfer_id.clone(), record.logged()))
        .collect();
    let mut report = AuditReport::default();
    let mut reads: JoinSet<Result<(TransferRecord, Verdict), AuditError>> = JoinSet::new();
    for record in records {
        if reads.len() >= READS_IN_FLIGHT_MAX {
            let joined = reads.join_next().await.expect("a read is in flight");
            tally(&mut report, joined.expect("audit read task")?);
        }
        let participants = Arc::clone(participants);
        reads.spawn(async move {
            let (external, internal) = tokio::join!(
                participants.get_reservation(Leg::External, &record.transfer_id, call_timeout),
                participants.get_reservation(Leg::BalanceStore, &record.transfer_id, call_timeout),
            );
            let read = |result: Result<ReservationView, CallError>| {
                result.map_err(|error| AuditError::Participant {
                    transfer_id: record.transfer_id.clone(),
                    error,
                })
            };
            let legs = [
                (Leg::External, read(external)?),
                (Leg::BalanceStore, read(internal)?),
            ];
            let verdict = check(record.state, legs);
            Ok((record, verdict))
        });
    }
    while let Some(joined) = reads.join_next().await {
        tally(&mut report, joined.expect("audit read task")?);
    }
    report.books = books::audit_books(store, &**participants, logged, reading).await?;
    // The last audit's mismatches, transfers' and books' (`banktransfer_audit_mismatches`).
    let mismatches = report.mismatches.len() + report.books.findings.len();
    metrics::gauge!(metrics::AUDIT_MISMATCHES).set(mismatches as f64);
    Ok(report)
}

fn tally(report: &mut AuditReport, (record, verdict): (TransferRecord, Verdict)) {
    report.checked += 1;
    report.unfinished += u32::from(verdict.unfinished);
    for description in verdict.mismatches {
        tracing::error!(transfer_id = %record.transfer_id, %description, "audit mismatch");
        report
            .mismatches
            .push((record.transfer_id.clone(), description));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationView::*;

    fn legs(external: ReservationView, internal: ReservationView) -> [(Leg, ReservationView); 2] {
        [(Leg::External, external), (Leg::BalanceStore, internal)]
    }

    #[test]
    fn succeeded_needs_both_legs_confirmed() {
        assert_eq!(
            check(RecordedState::Succeeded, legs(Confirmed, Confirmed)),
            Verdict::default()
        );
        let v = check(RecordedState::Succeeded, legs(Confirmed, Held));
        assert_eq!(
            v.mismatches,
            vec!["succeeded but the balance store reservation is HELD".to_string()]
        );
        assert_eq!(
            check(RecordedState::Succeeded, legs(NotFound, Cancelled))
                .mismatches
                .len(),
            2
        );
    }

    #[test]
    fn failed_allows_nothing_held_or_confirmed() {
        for fine in [NotFound, Cancelled, Refused] {
            assert_eq!(
                check(RecordedState::Failed, legs(fine, fine)),
                Verdict::default()
            );
        }
        assert_eq!(
            check(RecordedState::Failed, legs(Held, NotFound))
                .mismatches
                .len(),
            1
        );
        assert_eq!(
            check(RecordedState::Failed, legs(Cancelled, Confirmed))
                .mismatches
                .len(),
            1
        );
    }

    #[test]
    fn unfinished_transfers_are_counted_and_still_checked() {
        let v = check(RecordedState::Aborted, legs(Held, NotFound));
        assert!(v.unfinished && v.mismatches.is_empty());
        assert_eq!(
            check(RecordedState::Aborted, legs(Confirmed, Held))
                .mismatches
                .len(),
            1
        );
        let v = check(RecordedState::Committed, legs(Confirmed, Held));
        assert!(v.unfinished && v.mismatches.is_empty());
        assert_eq!(
            check(RecordedState::Committed, legs(Held, Cancelled))
                .mismatches
                .len(),
            1
        );
        let v = check(RecordedState::Started, legs(Held, NotFound));
        assert!(v.unfinished && v.mismatches.is_empty());
        assert_eq!(
            check(RecordedState::Started, legs(Confirmed, Held))
                .mismatches
                .len(),
            1
        );
    }
}
