//! Fuzzing every public request: arbitrary bytes -> protobuf decode (under the servers'
//! message limit) -> the service's own validation, which must never panic, never allocate
//! without bound, and refuse only with INVALID_ARGUMENT and a message.
//!
//! Map:
//! - [`targets`]: [`Target`], one per request a server decodes and validates (the
//!   gateway's ApproveTransfer and GetTransfer, the ReservationService both participants
//!   serve, each participant's account service, the mock's InjectFault), each calling the
//!   service's own validation function by name.
//! - [`outcome`]: what one input came to ([`Outcome`]), and [`execute`]'s measured
//!   [`Execution`] with the rules it must keep ([`Execution::violation`]).
//! - [`alloc_budget`]: the counting global allocator each fuzz binary installs, which
//!   measures the peak and the largest single allocation of one input.
//! - [`seeds`]: valid and near-valid encodings per target, the corpus a run starts from,
//!   so that mutations reach validation rather than stopping at decode errors.
//!
//! The libFuzzer targets are `fuzz_targets/*.rs` (feature `libfuzzer`); the
//! `banktransfer-fuzz` driver (feature `driver`, on by default) seeds the corpus, runs
//! them with bounds, tallies the outcomes and replays crashes. The property tests in
//! `tests/` show that no request refused by validation reaches a store.

use std::sync::OnceLock;

pub mod alloc_budget;
pub mod outcome;
pub mod seeds;
pub mod targets;

pub use outcome::{Execution, Outcome, execute};
pub use targets::Target;

/// The largest request the servers decode, in bytes (tonic's
/// `max_decoding_message_size` in the server shell): anything longer is refused before
/// decoding, so the targets never see it.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// The most one input may allocate at once (its peak of live heap bytes) and in a single
/// allocation: 64 times the largest message. A decoded request holds at most the
/// message's bytes, and a status message a few copies of a field: more than this would
/// mean an allocation sized by a number in the input rather than by the input.
pub const ALLOCATION_BYTES_MAX: usize = 64 * MESSAGE_BYTES_MAX;

/// The entry point of every libFuzzer target: runs one input and panics (a crash, which
/// libFuzzer saves) on any rule it breaks.
pub fn fuzz_one(target: Target, data: &[u8]) {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    assert!(
        *INSTALLED.get_or_init(alloc_budget::is_installed),
        "install banktransfer_fuzz::alloc_budget::CountingAllocator as the global allocator"
    );
    let execution = execute(target, data);
    if let Some(violation) = execution.violation() {
        panic!("{}: {violation}", target.name());
    }
}
