//! The injected faults, as a pure, bounded list: which fault (if any) a call meets.
//!
//! Faults match in insertion order on the call's operation (or on any operation); the
//! first match fires. A fault with `remaining_calls = 0` fires until cleared; otherwise
//! each firing uses up one call and the fault goes away at zero.

/// At most this many faults at once: the list lives in memory, and a test that needs more
/// is almost certainly leaking faults between cases.
pub const FAULTS_MAX: usize = 64;

/// Longest injectable latency, so that a fault cannot park requests indefinitely.
pub const LATENCY_MAX_MS: u32 = 60_000;

/// The reservation operations faults can apply to: the ones that pass the participant's
/// call gate (reads never meet faults, so tests can always look at the state).
pub use participant::grpc::Operation;

/// Which calls a fault matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Any,
    Only(Operation),
}

impl Target {
    fn matches(self, operation: Operation) -> bool {
        match self {
            Target::Any => true,
            Target::Only(target) => target == operation,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer INTERNAL without applying.
    Error,
    /// Wait, then apply and answer normally.
    Latency { latency_ms: u32 },
    /// Answer UNAVAILABLE without applying.
    Unavailable,
    /// Apply durably, then never answer.
    LoseReply,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub fault_id: String,
    pub target: Target,
    pub kind: FaultKind,
    /// Matching calls left; 0 means until cleared.
    pub remaining_calls: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooManyFaults;

#[derive(Debug, Default)]
pub struct FaultList {
    faults: Vec<Fault>,
    /// Ids are never reused, even after a clear, so logs stay unambiguous.
    injected_total: u64,
}

impl FaultList {
    pub fn inject(
        &mut self,
        target: Target,
        kind: FaultKind,
        calls: u32,
    ) -> Result<Fault, TooManyFaults> {
        if self.faults.len() >= FAULTS_MAX {
            return Err(TooManyFaults);
        }
        self.injected_total += 1;
        let fault = Fault {
            fault_id: format!("fault-{}", self.injected_total),
            target,
            kind,
            remaining_calls: calls,
        };
        self.faults.push(fault.clone());
        Ok(fault)
    }

    /// The fault a call to `operation` meets, as it was before this call used it up.
    pub fn fire(&mut self, operation: Operation) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|fault| fault.target.matches(operation))?;
        let fired = self.faults[index].clone();
        match fired.remaining_calls {
            0 => {}
            1 => {
                self.faults.remove(index);
            }
            _ => self.faults[index].remaining_calls -= 1,
        }
        Some(fired)
    }

    /// Removes every fault; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let cleared = self.faults.len();
        self.faults.clear();
        cleared
    }

    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fault_means_no_firing() {
        let mut list = FaultList::default();
        assert_eq!(list.fire(Operation::Reserve), None);
    }

    #[test]
    fn faults_match_their_operation_or_any() {
        let mut list = FaultList::default();
        list.inject(Target::Only(Operation::Confirm), FaultKind::Error, 0)
            .unwrap();
        assert_eq!(list.fire(Operation::Reserve), None);
        assert_eq!(list.fire(Operation::Cancel), None);
        assert_eq!(
            list.fire(Operation::Confirm).unwrap().kind,
            FaultKind::Error
        );
        list.inject(Target::Any, FaultKind::Unavailable, 0).unwrap();
        assert_eq!(
            list.fire(Operation::Cancel).unwrap().kind,
            FaultKind::Unavailable
        );
    }

    #[test]
    fn the_first_matching_fault_in_insertion_order_fires() {
        let mut list = FaultList::default();
        let any = list.inject(Target::Any, FaultKind::LoseReply, 1).unwrap();
        let reserve = list
            .inject(Target::Only(Operation::Reserve), FaultKind::Error, 0)
            .unwrap();
        assert_eq!(
            list.fire(Operation::Reserve).unwrap().fault_id,
            any.fault_id
        );
        // Used up: the next one in line fires.
        assert_eq!(
            list.fire(Operation::Reserve).unwrap().fault_id,
            reserve.fault_id
        );
    }

    #[test]
    fn counted_faults_fire_that_many_times_and_unlimited_ones_until_cleared() {
        let mut list = FaultList::default();
        list.inject(Target::Any, FaultKind::Error, 2).unwrap();
        let first = list.fire(Operation::Reserve).unwrap();
        assert_eq!(first.remaining_calls, 2);
        assert_eq!(list.faults()[0].remaining_calls, 1);
        assert!(list.fire(Operation::Reserve).is_some());
        assert_eq!(list.fire(Operation::Reserve), None);
        assert!(list.faults().is_empty());

        list.inject(Target::Any, FaultKind::Error, 0).unwrap();
        for _ in 0..100 {
            assert!(list.fire(Operation::Cancel).is_some());
        }
        assert_eq!(list.clear(), 1);
        assert_eq!(list.fire(Operation::Cancel), None);
    }

    #[test]
    fn the_list_is_bounded_and_ids_are_never_reused() {
        let mut list = FaultList::default();
        for _ in 0..FAULTS_MAX {
            list.inject(Target::Any, FaultKind::Error, 0).unwrap();
        }
        assert_eq!(
            list.inject(Target::Any, FaultKind::Error, 0),
            Err(TooManyFaults)
        );
        assert_eq!(list.clear(), FAULTS_MAX);
        let next = list.inject(Target::Any, FaultKind::Error, 0).unwrap();
        assert_eq!(next.fault_id, format!("fault-{}", FAULTS_MAX + 1));
    }
}
