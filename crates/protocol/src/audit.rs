//! The money-audit rules, one of each for the reconciler's Audit, the end-to-end and
//! simulation invariants and the model checker:
//! - the legs rule, here: does what both participants hold for a transfer agree with
//!   what the coordinator recorded? ([`mismatches`], [`leg_mismatch`]);
//! - the books rule, in [`books`] (re-exported here): does every reservation that holds
//!   or moved money match a recorded transfer, and does every account's balance follow
//!   from its opening balance and its reservations? ([`book_findings`]). It catches
//!   money that moved with no transfer at all, which the legs rule cannot see.

mod books;

pub use books::*;

use std::fmt;

use crate::reservation::ReservationStatus;
use crate::transfer::{Leg, RecordedState};

/// What a participant holds for a transfer, as an audit reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationView {
    /// No reserve (nor cancel) ever reached it.
    NotFound,
    Held,
    Confirmed,
    Cancelled,
    Refused,
}

impl ReservationView {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationView::NotFound => "NOT_FOUND",
            ReservationView::Held => "HELD",
            ReservationView::Confirmed => "CONFIRMED",
            ReservationView::Cancelled => "CANCELLED",
            ReservationView::Refused => "REFUSED",
        }
    }

    /// What a reservation book holds for the transfer (`None`: nothing recorded). A
    /// tombstone reads as CANCELLED.
    pub fn of_status(status: Option<&ReservationStatus>) -> ReservationView {
        match status {
            None => ReservationView::NotFound,
            Some(ReservationStatus::Held) => ReservationView::Held,
            Some(ReservationStatus::Confirmed) => ReservationView::Confirmed,
            Some(ReservationStatus::Cancelled) => ReservationView::Cancelled,
            Some(ReservationStatus::Refused(_)) => ReservationView::Refused,
        }
    }
}

/// Which money invariant a leg breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Broken {
    /// Confirmed while the record is not committed: a confirm preceded the durable
    /// commit, or followed an abort.
    ConfirmedWithoutCommit,
    /// Succeeded, yet this leg is not confirmed.
    SucceededUnconfirmed,
    /// Failed, yet this leg still holds money.
    HeldAfterFailure,
    /// Committed, yet this leg holds nothing that can ever be confirmed.
    CommittedUnconfirmable,
}

/// One leg that disagrees with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mismatch {
    pub recorded: RecordedState,
    pub leg: Leg,
    pub view: ReservationView,
    pub broken: Broken,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} but the {} reservation is {}",
            self.recorded.as_str(),
            self.leg.name(),
            self.view.as_str()
        )
    }
}

/// The money invariants, leg by leg:
/// - succeeded: CONFIRMED;
/// - failed: neither CONFIRMED nor HELD (NOT_FOUND, CANCELLED, REFUSED are fine);
/// - aborted (cancels under way): not CONFIRMED;
/// - committed (confirms under way): nothing that can never be confirmed;
/// - started (undecided): not CONFIRMED, since no confirm precedes a commit.
pub fn leg_mismatch(recorded: RecordedState, leg: Leg, view: ReservationView) -> Option<Mismatch> {
    use ReservationView::*;
    let broken = match recorded {
        RecordedState::Succeeded if view != Confirmed => Broken::SucceededUnconfirmed,
        RecordedState::Failed | RecordedState::Aborted | RecordedState::Started
            if view == Confirmed =>
        {
            Broken::ConfirmedWithoutCommit
        }
        RecordedState::Failed if view == Held => Broken::HeldAfterFailure,
        RecordedState::Committed if matches!(view, Cancelled | Refused | NotFound) => {
            Broken::CommittedUnconfirmable
        }
        _ => return None,
    };
    Some(Mismatch {
        recorded,
        leg,
        view,
        broken,
    })
}

/// Every leg of one transfer that disagrees with its record.
pub fn mismatches(recorded: RecordedState, legs: [(Leg, ReservationView); 2]) -> Vec<Mismatch> {
    legs.into_iter()
        .filter_map(|(leg, view)| leg_mismatch(recorded, leg, view))
        .collect()
}

/// What a reader of a transfer is told, from its record and what each leg shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The record says all there is.
    AsRecorded,
    /// The legs show an outcome the record does not hold yet.
    Outcome(RecordedState),
    /// A leg could not be read, and what it shows could change the answer.
    Unknown,
}

/// What a reader of a transfer recorded as `recorded` is told, given what each leg shows
/// (`None`: the leg could not be read). A commit whose two legs have confirmed has
/// succeeded, whether or not the write that records it has landed (the gateway answers
/// before it; a crash can lose it, and the reconciler then records it). So no one reads
/// PROCESSING after its client was told SUCCEEDED: a commit with a leg that cannot be
/// read is unknown, unless the other leg shows no confirm (confirms are permanent, and
/// SUCCEEDED was then never told).
pub fn read_outcome(recorded: RecordedState, legs: [Option<ReservationView>; 2]) -> ReadOutcome {
    if recorded != RecordedState::Committed {
        return ReadOutcome::AsRecorded;
    }
    let confirmed = |view: &Option<ReservationView>| *view == Some(ReservationView::Confirmed);
    if legs.iter().any(|view| view.is_some() && !confirmed(view)) {
        ReadOutcome::AsRecorded
    } else if legs.iter().all(confirmed) {
        ReadOutcome::Outcome(RecordedState::Succeeded)
    } else {
        ReadOutcome::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationView::*;

    #[test]
    fn a_commit_reads_as_succeeded_once_both_legs_show_their_confirm() {
        let read = |legs| read_outcome(RecordedState::Committed, legs);
        assert_eq!(
            read([Some(Confirmed), Some(Confirmed)]),
            ReadOutcome::Outcome(RecordedState::Succeeded)
        );
        for other in [NotFound, Held, Cancelled, Refused] {
            // A leg without its confirm: SUCCEEDED was never told, whatever the other.
            for legs in [
                [Some(Confirmed), Some(other)],
                [Some(other), Some(Confirmed)],
                [Some(other), None],
                [None, Some(other)],
            ] {
                assert_eq!(read(legs), ReadOutcome::AsRecorded, "{legs:?}");
            }
        }
        for legs in [
            [Some(Confirmed), None],
            [None, Some(Confirmed)],
            [None, None],
        ] {
            assert_eq!(read(legs), ReadOutcome::Unknown, "{legs:?}");
        }
        for recorded in RecordedState::ALL {
            if recorded != RecordedState::Committed {
                assert_eq!(
                    read_outcome(recorded, [Some(Confirmed), None]),
                    ReadOutcome::AsRecorded
                );
            }
        }
    }

    fn legs(external: ReservationView, internal: ReservationView) -> [(Leg, ReservationView); 2] {
        [(Leg::External, external), (Leg::BalanceStore, internal)]
    }

    fn broken(recorded: RecordedState, view: ReservationView) -> Option<Broken> {
        leg_mismatch(recorded, Leg::External, view).map(|m| m.broken)
    }

    #[test]
    fn succeeded_needs_both_legs_confirmed() {
        assert!(mismatches(RecordedState::Succeeded, legs(Confirmed, Confirmed)).is_empty());
        let found = mismatches(RecordedState::Succeeded, legs(Confirmed, Held));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "succeeded but the balance store reservation is HELD"
        );
        assert_eq!(found[0].broken, Broken::SucceededUnconfirmed);
        assert_eq!(
            mismatches(RecordedState::Succeeded, legs(NotFound, Cancelled)).len(),
            2
        );
    }

    #[test]
    fn nothing_is_confirmed_without_a_commit() {
        for recorded in [
            RecordedState::Started,
            RecordedState::Aborted,
            RecordedState::Failed,
        ] {
            assert_eq!(
                broken(recorded, Confirmed),
                Some(Broken::ConfirmedWithoutCommit)
            );
        }
        assert_eq!(broken(RecordedState::Committed, Confirmed), None);
    }

    #[test]
    fn failed_allows_nothing_held_and_committed_nothing_released() {
        for fine in [NotFound, Cancelled, Refused] {
            assert_eq!(broken(RecordedState::Failed, fine), None);
        }
        assert_eq!(
            broken(RecordedState::Failed, Held),
            Some(Broken::HeldAfterFailure)
        );
        // Cancels under way, undecided: a hold is expected.
        assert_eq!(broken(RecordedState::Aborted, Held), None);
        assert_eq!(broken(RecordedState::Started, Held), None);
        for released in [NotFound, Cancelled, Refused] {
            assert_eq!(
                broken(RecordedState::Committed, released),
                Some(Broken::CommittedUnconfirmable)
            );
        }
        assert_eq!(broken(RecordedState::Committed, Held), None);
    }
}
