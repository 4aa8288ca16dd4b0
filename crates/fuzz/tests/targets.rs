//! The fuzz targets themselves: the seeds reach validation (valid and refused outcomes,
//! not only decode errors) without breaking a rule, the message limit holds, and the
//! rules can fail: an allocation over the budget and a refusal with another code than
//! INVALID_ARGUMENT are reported.

use std::sync::{Mutex, MutexGuard, PoisonError};

use banktransfer_fuzz::alloc_budget::{self, CountingAllocator, Usage};
use banktransfer_fuzz::{
    ALLOCATION_BYTES_MAX, Execution, MESSAGE_BYTES_MAX, Outcome, Target, execute, seeds,
};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The allocation counters are process-wide: tests that measure take turns.
static MEASURING: Mutex<()> = Mutex::new(());

fn measuring() -> MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn every_seed_keeps_the_rules_and_the_seeds_reach_validation() {
    let _turn = measuring();
    for target in Target::ALL {
        let executions: Vec<Execution> = seeds::seeds(target)
            .iter()
            .map(|seed| execute(target, seed))
            .collect();
        for (i, execution) in executions.iter().enumerate() {
            assert_eq!(execution.violation(), None, "{} seed {i}", target.name());
        }
        let reached = |wanted: fn(&Outcome) -> bool| executions.iter().any(|e| wanted(&e.outcome));
        assert!(reached(|o| *o == Outcome::Valid), "{}", target.name());
        assert!(
            reached(|o| matches!(o, Outcome::Refused { .. })),
            "{}",
            target.name()
        );
        assert!(reached(|o| *o == Outcome::DecodeError), "{}", target.name());
    }
}

#[test]
fn a_message_over_the_limit_is_refused_before_decoding() {
    let over = vec![0u8; MESSAGE_BYTES_MAX + 1];
    for target in Target::ALL {
        assert_eq!(target.check(&over), Outcome::TooLarge, "{}", target.name());
        assert_ne!(
            target.check(&over[..MESSAGE_BYTES_MAX]),
            Outcome::TooLarge,
            "{}",
            target.name()
        );
    }
}

#[test]
fn the_allocator_measures_and_the_budget_is_enforced() {
    let _turn = measuring();
    assert!(alloc_budget::is_installed());
    let (buffer, usage) = alloc_budget::measure(|| vec![1u8; ALLOCATION_BYTES_MAX + 1]);
    assert_eq!(buffer.len(), ALLOCATION_BYTES_MAX + 1);
    assert!(usage.largest_bytes > ALLOCATION_BYTES_MAX, "{usage:?}");
    assert!(usage.peak_bytes > ALLOCATION_BYTES_MAX, "{usage:?}");
    let over = Execution {
        outcome: Outcome::Valid,
        usage,
    };
    assert!(over.violation().unwrap().contains("budget"));
    // Many small allocations held at once count too.
    let (_blocks, usage) = alloc_budget::measure(|| {
        (0..ALLOCATION_BYTES_MAX / 1024 + 1)
            .map(|_| vec![1u8; 1024])
            .collect::<Vec<_>>()
    });
    assert!(usage.largest_bytes < ALLOCATION_BYTES_MAX, "{usage:?}");
    assert!(usage.peak_bytes > ALLOCATION_BYTES_MAX, "{usage:?}");
}

#[test]
fn a_refusal_must_be_invalid_argument_with_a_message() {
    let refused = |code, message_bytes| Execution {
        outcome: Outcome::Refused {
            code,
            message_bytes,
        },
        usage: Usage::default(),
    };
    assert_eq!(refused(tonic::Code::InvalidArgument, 20).violation(), None);
    assert!(refused(tonic::Code::Internal, 20).violation().is_some());
    assert!(
        refused(tonic::Code::InvalidArgument, 0)
            .violation()
            .is_some()
    );
}

#[test]
fn targets_are_named_as_their_binaries() {
    let manifest = include_str!("../Cargo.toml");
    for target in Target::ALL {
        assert_eq!(Target::from_name(target.name()), Some(target));
        let bin = format!("path = \"fuzz_targets/{}.rs\"", target.name());
        assert!(
            manifest.contains(&bin),
            "no libFuzzer binary for {}",
            target.name()
        );
    }
    assert_eq!(Target::from_name("nope"), None);
}

#[test]
fn the_size_cap_is_the_servers_message_limit() {
    assert_eq!(
        banktransfer_fuzz::MESSAGE_BYTES_MAX,
        service_kit::server::MESSAGE_BYTES_MAX
    );
}
