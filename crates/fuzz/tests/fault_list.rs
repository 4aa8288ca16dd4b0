//! No invalid InjectFault request reaches the mock's fault list: arbitrary requests
//! through the FaultInjectionService. Whenever `fault_injection::parse` refuses one, the
//! service answers with that very status and the list stays empty; whenever it accepts
//! one, the list holds exactly the parsed fault.

mod common;

use std::sync::{Arc, Mutex};

use banktransfer_api::external::v1 as pb;
use banktransfer_api::external::v1::fault_injection_service_server::FaultInjectionService;
use common::{decoded, runtime, same_status};
use mock_external_institution::fault_injection::{self, FaultInjectionApi, lock};
use mock_external_institution::faults::FaultList;
use proptest::prelude::*;
use tonic::Request;

fn inject_request() -> impl Strategy<Value = pb::InjectFaultRequest> {
    let enum_value = prop_oneof![4 => -1i32..6, 1 => any::<i32>()];
    let latency_ms = prop_oneof![0u32..3, 59_999u32..60_002, Just(u32::MAX), any::<u32>()];
    prop_oneof![
        4 => (enum_value.clone(), enum_value, latency_ms, any::<u32>()).prop_map(
            |(operation, kind, latency_ms, calls)| pb::InjectFaultRequest {
                operation,
                kind,
                latency_ms,
                calls,
            }
        ),
        1 => decoded::<pb::InjectFaultRequest>(),
    ]
}

#[test]
fn an_invalid_fault_never_reaches_the_fault_list() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(512), |(request in inject_request())| {
        let parsed = fault_injection::parse(&request);
        let faults = Arc::new(Mutex::new(FaultList::default()));
        let api = FaultInjectionApi::new(Arc::clone(&faults));
        let answer = rt.block_on(api.inject_fault(Request::new(request)));
        let list = lock(&faults).faults().to_vec();
        match parsed {
            Err(refusal) => {
                prop_assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
                let got = answer.expect_err("a refused request was answered");
                prop_assert!(same_status(&got, &refusal), "{got:?} != {refusal:?}");
                prop_assert!(list.is_empty(), "{list:?}");
            }
            Ok((target, kind)) => {
                prop_assert_eq!(list.len(), 1);
                prop_assert_eq!(list[0].target, target);
                prop_assert_eq!(list[0].kind, kind);
                prop_assert_eq!(list[0].remaining_calls, request.calls);
            }
        }
    });
}
