//! The internal balance store: our balance store, the source of truth for users' balances. On
//! Reserve it screens the transfer (antifraud, limits, rate limit) and records a pending
//! credit; Confirm makes the credit available; Cancel drops it (the credit side of the
//! shared participant protocol).
//!
//! Map:
//! - [`config`]: [`Settings`] (the common participant keys plus `[rules]`).
//! - [`rules`]: the rules as a pure function of the rules, the terms and the counts.
//! - [`screening`]: counts in the reserve's own transaction, then applies the rules.
//! - the gRPC services, `ReservationService` and this service's own
//!   `BalanceStoreService`, are the `participant` library's (`participant::grpc::routes`).
//! - [`run`]: the shared participant wiring (`participant::serve`) with this service's
//!   parts: the credit side and the screening.

pub mod config;
pub mod rules;
pub mod screening;

use std::future::Future;
use std::sync::Arc;

use banktransfer_protocol::reservation::Side;
use participant::grpc::NoGate;
use participant::serve::Parts;
use service_kit::clock::{SharedClock, SystemClock};

pub use config::Settings;

/// The gRPC services this binary serves, for health and reflection.
pub const SERVICE_NAMES: &[&str] = &[
    "banktransfer.reservation.v1.ReservationService",
    "banktransfer.balance_store.v1.BalanceStoreService",
];

/// Runs the balance store on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve(settings, Arc::new(SystemClock), listener, shutdown).await
}

/// As [`run`], with the clock given (tests move it across rate limit and daily windows).
pub async fn serve(
    settings: Settings,
    clock: SharedClock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.rules.validate()?;
    let parts = Parts {
        side: Side::Credit,
        screening: screening::BalanceStoreScreening::new(settings.rules),
        gate: NoGate,
        add_services: |routes| routes,
        service_names: SERVICE_NAMES,
    };
    participant::serve::run(&settings.common, parts, clock, listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_names_are_the_shared_ones() {
        assert_eq!(
            SERVICE_NAMES,
            participant::grpc::service_names(Side::Credit)
        );
    }
}
