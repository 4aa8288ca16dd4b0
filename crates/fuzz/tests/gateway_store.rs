//! No invalid request reaches the gateway's transfer log or a participant: the
//! TransferService over the in-memory transfer log (which records every call it gets)
//! and fake participants (which record every call they get), driven with arbitrary
//! ApproveTransfer and GetTransfer requests. Whenever validation
//! (`gateway_coordinator::convert`, called here directly) refuses a request, the service
//! answers with that very status and neither the log nor a participant saw a call;
//! whenever it accepts one, what the log holds is the validated request.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use banktransfer_api::gateway::v1 as gateway_pb;
use banktransfer_api::gateway::v1::transfer_service_server::TransferService;
use banktransfer_protocol::budget::BudgetPolicy;
use banktransfer_protocol::ids::check_id;
use common::{decoded, id, money, runtime, same_status};
use coordinator::driver::Driver;
use coordinator::pause::PausePoints;
use gateway_coordinator::approve::Approver;
use gateway_coordinator::convert::{Lookup, TransferRequest};
use gateway_coordinator::service::TransferApi;
use proptest::prelude::*;
use service_kit::clock::{SharedClock, SystemClock};
use testkit::memory_transfer_store::{MemoryTransferStore, StoreCall};
use testkit::participants::FakeParticipants;
use testkit::pki::TestPki;
use testkit::sim_db::FailurePlan;
use tonic::Request;

struct Gateway {
    api: TransferApi<MemoryTransferStore, FakeParticipants>,
    pki: Arc<TestPki>,
    store: Arc<MemoryTransferStore>,
    participants: Arc<FakeParticipants>,
    store_calls: Arc<Mutex<Vec<StoreCall>>>,
}

/// A fresh gateway, wired as `gateway_coordinator::routes` wires it, whose store records
/// every call (through its failure planner, which plans no failure).
fn gateway() -> Gateway {
    let store_calls: Arc<Mutex<Vec<StoreCall>>> = Arc::default();
    let recorder = Arc::clone(&store_calls);
    let store = Arc::new(
        MemoryTransferStore::new().with_failures(Arc::new(move |call| {
            recorder.lock().unwrap().push(call);
            FailurePlan::default()
        })),
    );
    let participants = Arc::new(FakeParticipants::new());
    let clock: SharedClock = Arc::new(SystemClock);
    let policy = BudgetPolicy::DEFAULT;
    let driver = Driver::new(
        Arc::clone(&store),
        Arc::clone(&participants),
        Arc::clone(&clock),
        PausePoints::off(),
    );
    let approver = Approver::new(Arc::clone(&store), driver, Arc::clone(&clock), policy);
    let pki = pki();
    let tokens = pki
        .token_section()
        .validator(Arc::clone(&clock))
        .unwrap()
        .unwrap();
    Gateway {
        api: TransferApi::new(
            approver,
            Arc::new(tokens),
            Arc::clone(&store),
            clock,
            policy,
            16,
            amount_minor_max(),
        ),
        pki,
        store,
        participants,
        store_calls,
    }
}

impl Gateway {
    fn store_calls(&self) -> Vec<StoreCall> {
        self.store_calls.lock().unwrap().clone()
    }

    /// `message` as the user it names would send it: with that user's bearer token when
    /// the name is a valid id (a token can only name a valid user), else with alice's. The
    /// body is validated after the token either way, so an invalid body is still
    /// INVALID_ARGUMENT.
    fn as_user<T>(&self, user_id: &str, message: T) -> Request<T> {
        let user = if check_id("user_id", user_id).is_ok() {
            user_id
        } else {
            "alice"
        };
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.pki.bearer(user));
        request
    }
}

/// The gateway's default `amount_minor_max`.
fn amount_minor_max() -> i64 {
    gateway_coordinator::Settings::default().amount_minor_max
}

/// One PKI for the whole test binary: making one costs milliseconds, a case should not.
fn pki() -> Arc<TestPki> {
    static PKI: OnceLock<Arc<TestPki>> = OnceLock::new();
    Arc::clone(PKI.get_or_init(|| Arc::new(TestPki::new())))
}

fn approve_request() -> impl Strategy<Value = gateway_pb::ApproveTransferRequest> {
    prop_oneof![
        4 => (id(), id(), id(), id(), money()).prop_map(
            |(idempotency_key, user_id, external_account_id, internal_account_id, amount)| {
                gateway_pb::ApproveTransferRequest {
                    idempotency_key,
                    user_id,
                    external_account_id,
                    internal_account_id,
                    amount,
                }
            }
        ),
        1 => decoded::<gateway_pb::ApproveTransferRequest>(),
    ]
}

fn get_transfer_request() -> impl Strategy<Value = gateway_pb::GetTransferRequest> {
    use gateway_pb::get_transfer_request::Lookup as LookupPb;
    let lookup = prop_oneof![
        2 => id().prop_map(LookupPb::TransferId),
        2 => (id(), id()).prop_map(|(user_id, idempotency_key)| {
            LookupPb::IdempotencyKey(gateway_pb::IdempotencyKeyLookup { user_id, idempotency_key })
        }),
    ];
    prop_oneof![
        4 => proptest::option::weighted(0.95, lookup)
            .prop_map(|lookup| gateway_pb::GetTransferRequest { lookup }),
        1 => decoded::<gateway_pb::GetTransferRequest>(),
    ]
}

#[test]
fn an_invalid_approve_never_reaches_the_log_or_a_participant() {
    let rt = runtime();
    // Each accepted case drives a whole transfer: fewer cases than the participants'.
    proptest!(ProptestConfig::with_cases(256), |(request in approve_request())| {
        let validated = TransferRequest::parse(request.clone(), amount_minor_max());
        let gateway = gateway();
        let user_id = request.user_id.clone();
        let answer = rt.block_on(gateway.api.approve_transfer(gateway.as_user(&user_id, request)));
        let records = gateway.store.snapshot();
        let participant_calls = gateway.participants.calls();
        match validated {
            Err(refusal) => {
                prop_assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
                let got = answer.expect_err("a refused request was answered");
                prop_assert!(same_status(&got, &refusal), "{got:?} != {refusal:?}");
                prop_assert_eq!(gateway.store_calls(), vec![]);
                prop_assert!(records.is_empty(), "{records:?}");
                prop_assert!(participant_calls.is_empty(), "{participant_calls:?}");
            }
            Ok(transfer) => {
                // The intent is looked up or recorded first, under the validated key.
                let calls = gateway.store_calls();
                prop_assert!(!calls.is_empty());
                prop_assert!(records.len() <= 1, "{records:?}");
                for record in records.values() {
                    prop_assert_eq!(&record.idempotency_key, &transfer.idempotency_key);
                    prop_assert_eq!(&record.user_id, &transfer.user_id);
                    prop_assert_eq!(&record.external_account_id, &transfer.external_account_id);
                    prop_assert_eq!(&record.internal_account_id, &transfer.internal_account_id);
                    prop_assert_eq!(record.amount, transfer.amount);
                    prop_assert_eq!(&record.fingerprint, &transfer.fingerprint());
                    for call in &participant_calls {
                        prop_assert_eq!(&call.transfer_id, &record.transfer_id);
                    }
                }
                if records.is_empty() {
                    prop_assert!(participant_calls.is_empty(), "{participant_calls:?}");
                }
            }
        }
    });
}

#[test]
fn an_invalid_lookup_never_reaches_the_log() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(512), |(request in get_transfer_request())| {
        let validated = Lookup::try_from(request.clone());
        let gateway = gateway();
        let user_id = match &request.lookup {
            Some(gateway_pb::get_transfer_request::Lookup::IdempotencyKey(key)) => key.user_id.clone(),
            _ => "alice".to_owned(),
        };
        let answer = rt.block_on(gateway.api.get_transfer(gateway.as_user(&user_id, request)));
        let calls = gateway.store_calls();
        match validated {
            Err(refusal) => {
                prop_assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
                let got = answer.expect_err("a refused request was answered");
                prop_assert!(same_status(&got, &refusal), "{got:?} != {refusal:?}");
                prop_assert_eq!(calls, vec![]);
            }
            // An empty log: every valid lookup is one read, and finds nothing.
            Ok(Lookup::TransferId(_)) => {
                prop_assert_eq!(calls, vec![StoreCall::Get]);
                prop_assert_eq!(answer.unwrap_err().code(), tonic::Code::NotFound);
            }
            Ok(Lookup::IdempotencyKey { .. }) => {
                prop_assert_eq!(calls, vec![StoreCall::FindByKey]);
                prop_assert_eq!(answer.unwrap_err().code(), tonic::Code::NotFound);
            }
        }
        prop_assert!(gateway.participants.calls().is_empty());
    });
}
