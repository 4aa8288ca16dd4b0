//! The balance store's screening in memory: the counts its SQL screening makes, taken over
//! the in-memory book's recorded reservations, then the same pure
//! `internal_balance_store::rules::evaluate`.

use banktransfer_protocol::reservation::{Refusal, ReservationStatus, Terms};
use internal_balance_store::rules::{self, Counts, DAY_MS, Rules};
use testkit::memory_book::{MemoryScreening, StoredReservation};

#[derive(Clone, Debug)]
pub struct BalanceStoreMemoryScreening {
    rules: Rules,
}

impl BalanceStoreMemoryScreening {
    /// `rules` must be validated.
    pub fn new(rules: Rules) -> BalanceStoreMemoryScreening {
        BalanceStoreMemoryScreening { rules }
    }
}

impl MemoryScreening for BalanceStoreMemoryScreening {
    fn screen<'a>(
        &self,
        recorded: impl Iterator<Item = &'a StoredReservation>,
        terms: &Terms,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let window_start_ms = now_ms.saturating_sub(self.rules.rate_limit_window_ms);
        let day_start_ms = now_ms.saturating_sub(DAY_MS);
        let mut counts = Counts::default();
        for stored in recorded {
            // A tombstone has no user and no account (NULL columns): never counted.
            let Some(recorded_terms) = &stored.reservation.terms else {
                continue;
            };
            // COUNT_ONE's first count: any outcome.
            if recorded_terms.user_id == terms.user_id && stored.created_at_ms > window_start_ms {
                counts.reserves_in_window += 1;
            }
            // COUNT_ONE's second count: held or confirmed.
            let holds_money = matches!(
                stored.reservation.status,
                ReservationStatus::Held | ReservationStatus::Confirmed
            );
            if recorded_terms.account_id == terms.account_id
                && holds_money
                && stored.created_at_ms > day_start_ms
            {
                counts.inbound_last_day_minor = counts
                    .inbound_last_day_minor
                    .saturating_add(recorded_terms.amount.minor_units());
            }
        }
        rules::evaluate(&self.rules, terms, counts)
    }
}
