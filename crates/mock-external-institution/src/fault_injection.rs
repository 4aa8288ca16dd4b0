//! The FaultInjectionApi: inject, list and clear the faults that
//! [`crate::fault_gate`] applies to reserve, confirm and cancel. Requests are checked and
//! converted here, once.

use std::sync::{Arc, Mutex};

use banktransfer_api::external::v1 as pb;
use banktransfer_api::external::v1::fault_injection_service_server::FaultInjectionService as FaultInjectionRpc;
use tonic::{Request, Response, Status};

use crate::faults::{FAULTS_MAX, Fault, FaultKind, FaultList, LATENCY_MAX_MS, Operation, Target};

pub type SharedFaults = Arc<Mutex<FaultList>>;

pub fn lock(faults: &SharedFaults) -> std::sync::MutexGuard<'_, FaultList> {
    // The list is consistent after every statement: a panic elsewhere cannot leave it
    // half-changed, so a poisoned lock is still safe to use.
    faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct FaultInjectionApi {
    faults: SharedFaults,
}

impl FaultInjectionApi {
    pub fn new(faults: SharedFaults) -> FaultInjectionApi {
        FaultInjectionApi { faults }
    }
}

#[tonic::async_trait]
impl FaultInjectionRpc for FaultInjectionApi {
    async fn inject_fault(
        &self,
        request: Request<pb::InjectFaultRequest>,
    ) -> Result<Response<pb::InjectFaultResponse>, Status> {
        let request = request.into_inner();
        let (target, kind) = parse(&request)?;
        let fault = lock(&self.faults)
            .inject(target, kind, request.calls)
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "at most {FAULTS_MAX} faults can be active: clear them first"
                ))
            })?;
        tracing::warn!(
            fault_id = %fault.fault_id,
            target = ?fault.target,
            kind = ?fault.kind,
            calls = fault.remaining_calls,
            "fault injected"
        );
        Ok(Response::new(pb::InjectFaultResponse {
            fault: Some(to_proto(&fault)),
        }))
    }

    async fn clear_faults(
        &self,
        _request: Request<pb::ClearFaultsRequest>,
    ) -> Result<Response<pb::ClearFaultsResponse>, Status> {
        let cleared = lock(&self.faults).clear();
        tracing::info!(cleared, "faults cleared");
        Ok(Response::new(pb::ClearFaultsResponse {
            cleared: u32::try_from(cleared).expect("the fault list is bounded"),
        }))
    }

    async fn list_faults(
        &self,
        _request: Request<pb::ListFaultsRequest>,
    ) -> Result<Response<pb::ListFaultsResponse>, Status> {
        let faults = lock(&self.faults).faults().iter().map(to_proto).collect();
        Ok(Response::new(pb::ListFaultsResponse { faults }))
    }
}

/// An InjectFault request, checked: what to fail and how (public for the fuzz targets).
pub fn parse(request: &pb::InjectFaultRequest) -> Result<(Target, FaultKind), Status> {
    let target = match pb::Operation::try_from(request.operation) {
        Ok(pb::Operation::Any) => Target::Any,
        Ok(pb::Operation::Reserve) => Target::Only(Operation::Reserve),
        Ok(pb::Operation::Confirm) => Target::Only(Operation::Confirm),
        Ok(pb::Operation::Cancel) => Target::Only(Operation::Cancel),
        Ok(pb::Operation::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(
                "operation is unspecified: set OPERATION_ANY, OPERATION_RESERVE, \
                 OPERATION_CONFIRM or OPERATION_CANCEL",
            ));
        }
    };
    if request.latency_ms > LATENCY_MAX_MS {
        return Err(Status::invalid_argument(format!(
            "latency_ms is {}: use at most {LATENCY_MAX_MS}",
            request.latency_ms
        )));
    }
    let kind = match pb::FaultKind::try_from(request.kind) {
        Ok(pb::FaultKind::Error) => FaultKind::Error,
        Ok(pb::FaultKind::Unavailable) => FaultKind::Unavailable,
        Ok(pb::FaultKind::LoseReply) => FaultKind::LoseReply,
        Ok(pb::FaultKind::Latency) if request.latency_ms == 0 => {
            return Err(Status::invalid_argument(
                "latency_ms is 0: FAULT_KIND_LATENCY needs a positive latency_ms",
            ));
        }
        Ok(pb::FaultKind::Latency) => FaultKind::Latency {
            latency_ms: request.latency_ms,
        },
        Ok(pb::FaultKind::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(
                "kind is unspecified: set FAULT_KIND_ERROR, FAULT_KIND_LATENCY, \
                 FAULT_KIND_UNAVAILABLE or FAULT_KIND_LOSE_REPLY",
            ));
        }
    };
    Ok((target, kind))
}

fn to_proto(fault: &Fault) -> pb::Fault {
    let operation = match fault.target {
        Target::Any => pb::Operation::Any,
        Target::Only(Operation::Reserve) => pb::Operation::Reserve,
        Target::Only(Operation::Confirm) => pb::Operation::Confirm,
        Target::Only(Operation::Cancel) => pb::Operation::Cancel,
    };
    let (kind, latency_ms) = match fault.kind {
        FaultKind::Error => (pb::FaultKind::Error, 0),
        FaultKind::Latency { latency_ms } => (pb::FaultKind::Latency, latency_ms),
        FaultKind::Unavailable => (pb::FaultKind::Unavailable, 0),
        FaultKind::LoseReply => (pb::FaultKind::LoseReply, 0),
    };
    pb::Fault {
        fault_id: fault.fault_id.clone(),
        operation: operation.into(),
        kind: kind.into(),
        latency_ms,
        remaining_calls: fault.remaining_calls,
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn request(
        operation: pb::Operation,
        kind: pb::FaultKind,
        latency_ms: u32,
    ) -> pb::InjectFaultRequest {
        pb::InjectFaultRequest {
            operation: operation.into(),
            kind: kind.into(),
            latency_ms,
            calls: 0,
        }
    }

    fn refusal(request: pb::InjectFaultRequest) -> String {
        let status = parse(&request).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn valid_requests_parse() {
        assert_eq!(
            parse(&request(pb::Operation::Reserve, pb::FaultKind::Latency, 50)).unwrap(),
            (
                Target::Only(Operation::Reserve),
                FaultKind::Latency { latency_ms: 50 }
            )
        );
        assert_eq!(
            parse(&request(pb::Operation::Any, pb::FaultKind::LoseReply, 0)).unwrap(),
            (Target::Any, FaultKind::LoseReply)
        );
    }

    #[test]
    fn invalid_requests_say_what_to_fix() {
        let unspecified = refusal(request(pb::Operation::Unspecified, pb::FaultKind::Error, 0));
        assert!(unspecified.contains("operation"), "{unspecified}");
        let unknown_operation = pb::InjectFaultRequest {
            operation: 99,
            ..request(pb::Operation::Any, pb::FaultKind::Error, 0)
        };
        assert!(refusal(unknown_operation).contains("operation"));
        let no_kind = refusal(request(pb::Operation::Any, pb::FaultKind::Unspecified, 0));
        assert!(no_kind.contains("kind"), "{no_kind}");
        let no_latency = refusal(request(pb::Operation::Any, pb::FaultKind::Latency, 0));
        assert!(no_latency.contains("latency_ms"), "{no_latency}");
        let too_long = refusal(request(
            pb::Operation::Any,
            pb::FaultKind::Latency,
            LATENCY_MAX_MS + 1,
        ));
        assert!(too_long.contains("at most 60000"), "{too_long}");
    }

    #[test]
    fn faults_render_back_as_requested() {
        let fault = Fault {
            fault_id: "fault-7".into(),
            target: Target::Only(Operation::Cancel),
            kind: FaultKind::Latency { latency_ms: 20 },
            remaining_calls: 3,
        };
        let message = to_proto(&fault);
        assert_eq!(message.operation(), pb::Operation::Cancel);
        assert_eq!(message.kind(), pb::FaultKind::Latency);
        assert_eq!((message.latency_ms, message.remaining_calls), (20, 3));
        assert_eq!(message.fault_id, "fault-7");
    }
}
