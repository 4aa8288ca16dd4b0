//! The participant side of the BankTransfer protocol, shared by the external institution
//! (debit side) and our balance store (credit side).
//!
//! The decisions (what reserve, confirm and cancel do) live in the pure
//! `banktransfer_protocol::reservation` book; this crate stores them and serves them.
//!
//! Map:
//! - [`book`]: the [`ReservationBook`] trait the gRPC handlers drive, and its domain types
//!   ([`NewAccount`], [`OpenOutcome`], [`StoreError`]).
//! - [`store`]: [`ReservationStore`], the book over SQL: every reserve, confirm and cancel
//!   is one database transaction. All of the crate's SQL is in `store/sql.rs`. (The
//!   book in memory, for the deterministic simulation, is `testkit::memory_book`.)
//! - [`screening`]: the [`Screening`] hook a participant runs inside the reserve
//!   transaction (the balance store's antifraud, limits and rate limit); [`NoScreening`]
//!   for the external institution.
//! - [`grpc`]: [`grpc::Participant`], the handler logic: proto <-> domain conversion
//!   (once, in `grpc/convert.rs`), outcome -> gRPC status, spans, logs; and in
//!   `grpc/services.rs` the services over it: `ReservationService`, which both
//!   participants serve (reserve, confirm and cancel behind a [`grpc::CallGate`]), and
//!   each participant's own account service.
//! - [`serve`]: [`serve::run`], a participant from start to stop (database, migrations,
//!   seed accounts, routes, server), given the [`serve::Parts`] that make it itself.
//! - [`config`]: [`config::CommonSettings`], the keys every participant has (top-level
//!   keys, `[server]`, `[database]`, `[[accounts]]`), and their validation.
//! - [`seed`]: opening the configured accounts at start-up, idempotently.
//! - [`MIGRATIONS`]: the schema, per back end.

pub mod book;
pub mod config;
pub mod grpc;
pub mod screening;
pub mod seed;
pub mod serve;
pub mod store;

pub use book::{NewAccount, OpenOutcome, ReservationBook, StoreError};
pub use screening::{NoScreening, Screening};
pub use store::ReservationStore;

/// The reservation book's schema: `accounts` and `reservations`, with the indexes the
/// balance store's rate limit and daily limit count with; then each account's opening
/// balance, which the audit explains its balances from.
pub const MIGRATIONS: service_kit::db::Migrations = service_kit::db::Migrations {
    sqlite: &[
        (
            "reservation book",
            include_str!("../migrations/sqlite/0001_reservation_book.sql"),
        ),
        (
            "opening balance",
            include_str!("../migrations/sqlite/0002_opening_balance.sql"),
        ),
    ],
    postgres: &[
        (
            "reservation book",
            include_str!("../migrations/postgres/0001_reservation_book.sql"),
        ),
        (
            "opening balance",
            include_str!("../migrations/postgres/0002_opening_balance.sql"),
        ),
    ],
};
