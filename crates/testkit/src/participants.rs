//! Scripted participants for tests (this crate's and the reconciler's): each leg holds,
//! refuses, fails or dawdles as told, keeps a reservation book with the real
//! participants' rules (replays, tombstones, no confirm after cancel), and records every
//! call so a test can assert who was called, when, and how often.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use banktransfer_protocol::transfer::{Leg, ReserveReply};
use coordinator::participants::{CallError, Participants, ReservationView, ReserveTerms};
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
}

impl Default for LegScript {
    fn default() -> Self {
        LegScript {
            reserve: FakeReserve::Hold,
            reserve_delay: Duration::ZERO,
            settle_delay: Duration::ZERO,
            settle_fails: false,
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

#[derive(Default)]
struct Book {
    scripts: [LegScript; 2],
    calls: Vec<Call>,
    reservations: HashMap<(Leg, String), ReservationView>,
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
        Leg::Internal => 1,
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
        self.lock()
            .reservations
            .get(&(leg, transfer_id.to_owned()))
            .copied()
            .unwrap_or(ReservationView::NotFound)
    }

    /// Overwrites what a leg holds (an audit test's tampering).
    pub fn set_reservation(&self, leg: Leg, transfer_id: &str, view: ReservationView) {
        self.lock()
            .reservations
            .insert((leg, transfer_id.to_owned()), view);
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
        let mut book = self.lock();
        let key = (leg, transfer_id.to_owned());
        let current = book
            .reservations
            .get(&key)
            .copied()
            .unwrap_or(ReservationView::NotFound);
        let next = match (op, current) {
            (Op::Confirm, ReservationView::Held | ReservationView::Confirmed) => {
                ReservationView::Confirmed
            }
            (Op::Confirm, other) => {
                return Err(CallError(format!(
                    "cannot confirm a reservation that is {}",
                    other.as_str()
                )));
            }
            (Op::Cancel, ReservationView::Confirmed) => {
                return Err(CallError("cannot cancel a confirmed reservation".into()));
            }
            // A cancel of an unknown transfer leaves a tombstone.
            (Op::Cancel, _) => ReservationView::Cancelled,
            (other, _) => unreachable!("{other:?} is not a settlement"),
        };
        book.reservations.insert(key, next);
        Ok(())
    }
}

impl Participants for FakeParticipants {
    async fn reserve(&self, leg: Leg, terms: &ReserveTerms, _timeout: Duration) -> ReserveReply {
        let script = self.arrive(leg, Op::Reserve, &terms.transfer_id);
        pass(&self.reserve_gates[index(leg)]).await;
        tokio::time::sleep(script.reserve_delay).await;
        let mut book = self.lock();
        let key = (leg, terms.transfer_id.clone());
        match book.reservations.get(&key) {
            Some(ReservationView::Held | ReservationView::Confirmed) => return ReserveReply::Held,
            Some(ReservationView::Cancelled) => {
                return ReserveReply::Refused("cancelled before the reserve arrived".into());
            }
            Some(ReservationView::Refused) => return ReserveReply::Refused("refused".into()),
            Some(ReservationView::NotFound) | None => {}
        }
        match script.reserve {
            FakeReserve::Hold => {
                book.reservations.insert(key, ReservationView::Held);
                ReserveReply::Held
            }
            FakeReserve::Refuse(why) => {
                book.reservations.insert(key, ReservationView::Refused);
                ReserveReply::Refused(why)
            }
            FakeReserve::Fail(why) => ReserveReply::Unknown(why),
        }
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
        self.arrive(leg, Op::GetReservation, transfer_id);
        Ok(self.reservation(leg, transfer_id))
    }
}
