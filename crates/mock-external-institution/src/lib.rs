//! The mock external institution: the other bank, where users' funds are. It holds funds
//! on Reserve, moves them out on Confirm and releases them on Cancel (the debit side of
//! the shared participant protocol), and lets tests inject faults into those calls.
//!
//! Map:
//! - [`config`]: [`Settings`] (the common participant keys, with this service's defaults).
//! - [`fault_gate`]: the injected faults as the call gate of the shared
//!   `ReservationService` (the `participant` library serves it, and this service's own
//!   `ExternalInstitutionService`), applied to reserve, confirm and cancel.
//! - [`faults`]: the bounded fault list and which fault a call meets (pure).
//! - [`fault_injection`]: the `FaultInjectionApi` (serving FaultInjectionService, to
//!   operators only) that edits that list.
//! - [`run`]: the shared participant wiring (`participant::serve`) with this service's
//!   parts: the debit side, no screening, the fault gate, and the FaultInjectionService.

pub mod config;
pub mod fault_gate;
pub mod fault_injection;
pub mod faults;

use std::future::Future;
use std::sync::{Arc, Mutex};

use banktransfer_api::external::v1::fault_injection_service_server::FaultInjectionServiceServer;
use banktransfer_protocol::reservation::Side;
use participant::NoScreening;
use participant::serve::Parts;
use service_kit::authz::require_identities;
use service_kit::clock::SystemClock;
use service_kit::tls::OPERATOR_IDENTITIES;
use tonic::service::interceptor::InterceptedService;

pub use config::Settings;

/// The gRPC services this binary serves, for health and reflection.
pub const SERVICE_NAMES: &[&str] = &[
    "banktransfer.reservation.v1.ReservationService",
    "banktransfer.external.v1.ExternalInstitutionService",
    "banktransfer.external.v1.FaultInjectionService",
];

/// Runs the institution on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let faults = Arc::new(Mutex::new(faults::FaultList::default()));
    // Lost replies wait for this, so that shutdown does not wait out their hold.
    let (stopping, stop) = service_kit::shutdown::channel();
    let fault_injection = fault_injection::FaultInjectionApi::new(Arc::clone(&faults));
    let parts = Parts {
        side: Side::Debit,
        screening: NoScreening,
        gate: fault_gate::FaultGate::new(faults, stop),
        add_services: |routes: tonic::service::Routes| {
            // A mock's switchboard, but still only an operator may flip it.
            routes.add_service(InterceptedService::new(
                service_kit::limit!(FaultInjectionServiceServer::new(fault_injection)),
                require_identities(OPERATOR_IDENTITIES),
            ))
        },
        service_names: SERVICE_NAMES,
    };
    let shutdown = async move {
        shutdown.await;
        stopping.trigger();
    };
    let clock = Arc::new(SystemClock);
    participant::serve::run(&settings, parts, clock, listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_names_are_the_shared_ones_and_fault_injection() {
        let shared = participant::grpc::service_names(Side::Debit);
        assert_eq!(SERVICE_NAMES[..2], shared);
        assert_eq!(
            SERVICE_NAMES[2],
            banktransfer_api::external::v1::fault_injection_service_server::SERVICE_NAME
        );
    }
}
