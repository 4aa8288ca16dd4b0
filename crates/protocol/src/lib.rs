//! The BankTransfer protocol core: pure, deterministic code (no I/O, no clock reads, no
//! randomness) that the services drive and the tests explore.
//!
//! Map:
//! - [`money`]: integer minor units of an ISO 4217 currency; checked arithmetic.
//! - [`transfer`]: the coordinator's state machine for one transfer. Reserve on both
//!   participants, record a decision durably (compare-and-set), then confirm or cancel both.
//!   It emits [`transfer::Effect`]s and never emits a confirm before the commit decision is
//!   reported durable: persist-before-send is a property of this code, not of its drivers.
//! - [`reservation`]: each participant's reservation book: reserve / confirm / cancel, with
//!   tombstones for cancel-before-reserve and replay of every earlier answer.
//! - [`reconcile`]: the staleness rule (when an undecided transfer is taken over, by the
//!   reconciler or a replayed request), the reason its abort records, and the backoff.
//! - [`budget`]: how the client's deadline budget is split between the protocol's phases,
//!   and how long past it an undecided transfer turns stale.
//! - [`ids`]: what an id may be (bytes, character set), checked at every boundary.
//! - [`fingerprint`]: the request fingerprint behind API idempotency.
//! - [`admission`]: what the gateway refuses at once under load: an adaptive concurrency
//!   limit learnt from drive latencies, a deadline check against the expected service time,
//!   and the retry pushback sent with a refusal.
//! - [`audit`]: the money-audit rules: what each participant may hold for a transfer, given
//!   its recorded state; and that every reservation holding or moving money matches a
//!   transfer, and every account's balance follows from its opening balance and its
//!   reservations.
//!
//! Time is always a parameter (`now_ms`, milliseconds since the Unix epoch); randomness
//! (backoff jitter) is always an argument.

pub mod admission;
pub mod audit;
pub mod budget;
pub mod fingerprint;
pub mod ids;
pub mod money;
pub mod reconcile;
pub mod reservation;
pub mod transfer;
