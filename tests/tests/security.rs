//! Attacks at the real ports (issue 7, item 9), against the four binaries with TLS on every
//! port, client certificates for the services and the operator, and user tokens on the
//! gateway. Every refused call is checked for its status code and for a message without
//! database text, and for leaving nothing behind: the same balances, no transfer in the
//! coordinator's log (the reconciler's Audit counts them), no reservation at either
//! participant, and no intent or reserve in the services' logs (`banktransfer_e2e::attack`).
//!
//! One cluster serves a group of related attacks; each attack is a block of its own.

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::balance_store::v1::balance_store_service_client::BalanceStoreServiceClient;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_client::ExternalInstitutionServiceClient;
use banktransfer_api::external::v1::fault_injection_service_client::FaultInjectionServiceClient;
use banktransfer_api::external::v1::{
    ClearFaultsRequest, FaultKind, InjectFaultRequest, ListFaultsRequest, Operation,
};
use banktransfer_api::gateway::v1::IdempotencyKeyLookup;
use banktransfer_api::gateway::v1::get_transfer_request::Lookup;
use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::reconciler::v1::reconciler_service_client::ReconcilerServiceClient;
use banktransfer_api::reconciler::v1::{
    AuditRequest, Participant, RunPassRequest, UnmatchedReason,
};
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_api::reservation::v1::{
    CancelRequest, ConfirmRequest, GetReservationRequest, ReservationStatus, ReserveRequest,
};
use banktransfer_e2e::attack::{
    Books, FORGED_LOG_LINE, LogMarks, assert_no_database_text, assert_refused, assert_status,
    bad_ids,
};
use banktransfer_e2e::clients::{plaintext_channel, request, usd};
use banktransfer_e2e::pki::{bearer, now_s};
use banktransfer_e2e::{
    Auth, Caller, Cluster, ClusterConfig, ClusterPki, Service, TransferRequest,
};
use banktransfer_pki::token::TokenSpec;
use service_kit::jwt::{
    AUTHORIZATION_HEADER, TOKEN_EXPIRED_MSG, TOKEN_INVALID_MSG, TOKEN_REQUIRED_MSG,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn reserve(
    transfer_id: &str,
    account_id: &str,
    user_id: &str,
    amount_minor: i64,
) -> ReserveRequest {
    ReserveRequest {
        transfer_id: transfer_id.to_owned(),
        account_id: account_id.to_owned(),
        user_id: user_id.to_owned(),
        amount: Some(usd(amount_minor)),
    }
}

fn reservations(channel: Channel) -> ReservationServiceClient<Channel> {
    ReservationServiceClient::new(channel)
}

/// Neither participant holds a reservation for `transfer_id` (read as the auditor).
async fn assert_no_reservation(cluster: &Cluster, transfer_id: &str, after: &str) {
    let clients = cluster.clients();
    for (participant, answer) in [
        (
            "external institution",
            clients.external_reservation(transfer_id).await,
        ),
        (
            "balance store",
            clients.internal_reservation(transfer_id).await,
        ),
    ] {
        assert_refused(
            &format!("after {after}, GetReservation at the {participant}"),
            answer,
            Code::NotFound,
        );
    }
}

/// The participants, each with an account and its user.
const PARTICIPANTS: [(Service, &str, &str); 2] = [
    (Service::External, "ext-bob", "bob"),
    (Service::BalanceStore, "int-bob", "bob"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_layer_refuses_plaintext_and_foreign_certificates() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);

    // Plaintext (http://) to each of the four ports: the call fails, whatever it carries.
    let req = TransferRequest::new("alice", 1_000);
    let mut call = request(req.to_proto());
    call.metadata_mut()
        .insert(AUTHORIZATION_HEADER, bearer(&cluster.pki().token("alice")));
    let answer = TransferServiceClient::new(plaintext_channel(cluster.port(Service::Gateway)))
        .approve_transfer(call)
        .await;
    let status = answer.expect_err("ApproveTransfer over plaintext must fail");
    eprintln!("[e2e] plaintext ApproveTransfer: {status:?}");
    assert_no_database_text("plaintext ApproveTransfer", &status);
    assert_refused(
        "GetTransfer of the plaintext request's key",
        cluster.transfers().get_by_key(&req.key()).await,
        Code::NotFound,
    );
    for (participant, account, user) in PARTICIPANTS {
        let id = new_id();
        let answer = reservations(plaintext_channel(cluster.port(participant)))
            .reserve(request(reserve(&id, account, user, 1_000)))
            .await;
        let status = answer.expect_err("Reserve over plaintext must fail");
        eprintln!("[e2e] plaintext Reserve at {participant}: {status:?}");
        assert_no_database_text("plaintext Reserve", &status);
        assert_no_reservation(&cluster, &id, "a plaintext Reserve").await;
    }
    let mut reconciler =
        ReconcilerServiceClient::new(plaintext_channel(cluster.port(Service::Reconciler)));
    let status = reconciler
        .run_pass(request(RunPassRequest {}))
        .await
        .expect_err("RunPass over plaintext must fail");
    eprintln!("[e2e] plaintext RunPass: {status:?}");
    assert!(
        reconciler
            .audit(request(AuditRequest { limit: 0 }))
            .await
            .is_err(),
        "Audit over plaintext must fail"
    );

    // A client certificate from another CA, naming the coordinator (or the operator): the
    // handshake fails, so the caller never gets to a method.
    let foreign = ClusterPki::create(&cluster.dir().join("foreign-pki"));
    let impostor = |name: &str| {
        let read = |path: std::path::PathBuf| std::fs::read(path).expect("foreign PKI file");
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(cluster.pki().files().ca_cert())))
            .identity(Identity::from_pem(
                read(foreign.files().cert(name)),
                read(foreign.files().key(name)),
            ))
    };
    for (participant, account, user) in PARTICIPANTS {
        let id = new_id();
        let channel = banktransfer_e2e::clients::channel(
            cluster.port(participant),
            impostor(Service::Gateway.binary_name()),
        );
        let status = reservations(channel)
            .reserve(request(reserve(&id, account, user, 1_000)))
            .await
            .expect_err("Reserve with a foreign coordinator certificate must fail");
        eprintln!("[e2e] foreign-CA Reserve at {participant}: {status:?}");
        assert_no_database_text("foreign-CA Reserve", &status);
        assert_no_reservation(&cluster, &id, "a Reserve with a foreign certificate").await;
    }
    let channel =
        banktransfer_e2e::clients::channel(cluster.port(Service::Reconciler), impostor("operator"));
    let status = ReconcilerServiceClient::new(channel)
        .run_pass(request(RunPassRequest {}))
        .await
        .expect_err("RunPass with a foreign operator certificate must fail");
    eprintln!("[e2e] foreign-CA RunPass: {status:?}");

    before
        .assert_unchanged(&cluster, "the TLS-layer attacks")
        .await;
    marks.assert_nothing_recorded(&cluster, "the TLS-layer attacks");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_coordinator_may_call_a_participants_reservation_service() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);

    for (participant, account, user) in PARTICIPANTS {
        let other = match participant {
            Service::External => Service::BalanceStore,
            _ => Service::External,
        };
        for (caller, code) in [
            (Caller::Operator, Code::PermissionDenied),
            (Caller::Service(participant), Code::PermissionDenied),
            (Caller::Service(other), Code::PermissionDenied),
            (Caller::NoCertificate, Code::Unauthenticated),
        ] {
            let what = |call: &str| format!("{call} at the {participant} as {caller:?}");
            let mut client = reservations(cluster.channel(participant, caller));
            let id = new_id();
            let answer = client
                .reserve(request(reserve(&id, account, user, 10_000)))
                .await;
            assert_refused(&what("Reserve"), answer, code);
            let confirm = ConfirmRequest {
                transfer_id: id.clone(),
            };
            assert_refused(
                &what("Confirm"),
                client.confirm(request(confirm)).await,
                code,
            );
            let cancel = CancelRequest {
                transfer_id: id.clone(),
            };
            assert_refused(&what("Cancel"), client.cancel(request(cancel)).await, code);
            let read = GetReservationRequest {
                transfer_id: id.clone(),
            };
            assert_refused(
                &what("GetReservation"),
                client.get_reservation(request(read)).await,
                code,
            );
            assert_no_reservation(&cluster, &id, &what("Reserve")).await;
        }
        // The coordinator's own certificate gets past the check (an unknown reservation is
        // NOT_FOUND): the refusals above are about identity.
        let read = GetReservationRequest {
            transfer_id: new_id(),
        };
        let answer = reservations(cluster.channel(participant, Caller::Service(Service::Gateway)))
            .get_reservation(request(read))
            .await;
        assert_refused("GetReservation as the gateway", answer, Code::NotFound);
    }

    before
        .assert_unchanged(&cluster, "reserves by other identities")
        .await;
    marks.assert_nothing_recorded(&cluster, "reserves by other identities");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_apis_refuse_every_other_identity() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);
    let clients = cluster.clients().clone();
    let outsiders = [
        (Caller::Service(Service::Gateway), Code::PermissionDenied),
        (Caller::Service(Service::Reconciler), Code::PermissionDenied),
        (
            Caller::Service(Service::BalanceStore),
            Code::PermissionDenied,
        ),
        (Caller::NoCertificate, Code::Unauthenticated),
    ];

    // Opening an account (it creates money) at either participant.
    for (caller, code) in outsiders {
        let mut external =
            ExternalInstitutionServiceClient::new(cluster.channel(Service::External, caller));
        let open = external_pb::OpenAccountRequest {
            account_id: "ext-eve".to_owned(),
            user_id: "eve".to_owned(),
            opening_balance: Some(usd(100_000_000)),
        };
        let what = format!("OpenAccount at the external institution as {caller:?}");
        assert_refused(&what, external.open_account(request(open)).await, code);
        let mut balance_store =
            BalanceStoreServiceClient::new(cluster.channel(Service::BalanceStore, caller));
        let open = balance_store_pb::OpenAccountRequest {
            account_id: "int-eve".to_owned(),
            user_id: "eve".to_owned(),
            opening_balance: Some(usd(100_000_000)),
        };
        let what = format!("OpenAccount at the balance store as {caller:?}");
        assert_refused(&what, balance_store.open_account(request(open)).await, code);
    }
    assert_refused(
        "GetAccount ext-eve",
        clients.external_account("ext-eve").await,
        Code::NotFound,
    );
    assert_refused(
        "GetAccount int-eve",
        clients.internal_account("int-eve").await,
        Code::NotFound,
    );

    // Reading accounts: operators and the reconciler's audit only.
    for (caller, code) in [
        (Caller::Service(Service::Gateway), Code::PermissionDenied),
        (Caller::Service(Service::External), Code::PermissionDenied),
        (Caller::NoCertificate, Code::Unauthenticated),
    ] {
        let read = balance_store_pb::GetAccountRequest {
            account_id: "int-alice".to_owned(),
        };
        let answer = BalanceStoreServiceClient::new(cluster.channel(Service::BalanceStore, caller))
            .get_account(request(read))
            .await;
        assert_refused(&format!("GetAccount as {caller:?}"), answer, code);
    }

    // Fault injection at the mock institution.
    for (caller, code) in outsiders {
        let mut faults =
            FaultInjectionServiceClient::new(cluster.channel(Service::External, caller));
        let inject = InjectFaultRequest {
            operation: Operation::Reserve.into(),
            kind: FaultKind::Unavailable.into(),
            latency_ms: 0,
            calls: 0,
        };
        let what = |call: &str| format!("{call} as {caller:?}");
        assert_refused(
            &what("InjectFault"),
            faults.inject_fault(request(inject)).await,
            code,
        );
        assert_refused(
            &what("ListFaults"),
            faults.list_faults(request(ListFaultsRequest {})).await,
            code,
        );
        assert_refused(
            &what("ClearFaults"),
            faults.clear_faults(request(ClearFaultsRequest {})).await,
            code,
        );
    }
    assert!(
        clients.faults_armed().await.is_empty(),
        "a fault was armed by a caller that is not the operator"
    );

    // The reconciler's operator API.
    for (caller, code) in outsiders {
        let mut reconciler =
            ReconcilerServiceClient::new(cluster.channel(Service::Reconciler, caller));
        let what = |call: &str| format!("{call} as {caller:?}");
        assert_refused(
            &what("RunPass"),
            reconciler.run_pass(request(RunPassRequest {})).await,
            code,
        );
        assert_refused(
            &what("Audit"),
            reconciler.audit(request(AuditRequest { limit: 0 })).await,
            code,
        );
    }

    before
        .assert_unchanged(&cluster, "operator calls by others")
        .await;
    marks.assert_nothing_recorded(&cluster, "operator calls by others");

    // The operator may: the refusals above are about identity.
    let open = balance_store_pb::OpenAccountRequest {
        account_id: "int-eve".to_owned(),
        user_id: "eve".to_owned(),
        opening_balance: Some(usd(0)),
    };
    clients
        .balance_store_accounts
        .clone()
        .open_account(request(open))
        .await
        .expect("the operator opens an account");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_unauthenticated_and_record_nothing() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let pki = cluster.pki();
    let foreign = ClusterPki::create(&cluster.dir().join("foreign-pki"));
    let now = now_s();
    let alice = || TokenSpec::new("alice", now);
    let header = |token: String| Auth::Header(format!("Bearer {token}"));
    let cases = [
        ("no authorization header", Auth::Missing, TOKEN_REQUIRED_MSG),
        (
            "a Basic authorization",
            Auth::Header("Basic YWxpY2U6cGFzc3dvcmQ=".to_owned()),
            TOKEN_REQUIRED_MSG,
        ),
        (
            "a bearer that is not a JWT",
            Auth::Header("Bearer not-a-jwt".to_owned()),
            TOKEN_INVALID_MSG,
        ),
        (
            // An hour past its expiry, far beyond the gateway's leeway.
            "an expired token",
            header(pki.mint(&TokenSpec {
                now_s: now - 2 * 3_600,
                ttl_s: 3_600,
                ..alice()
            })),
            TOKEN_EXPIRED_MSG,
        ),
        (
            "a token signed with another PKI's key",
            header(foreign.token("alice")),
            TOKEN_INVALID_MSG,
        ),
        (
            "a token for another audience",
            header(pki.mint(&TokenSpec {
                audience: "another-service".to_owned(),
                ..alice()
            })),
            TOKEN_INVALID_MSG,
        ),
        (
            "a token from another issuer",
            header(pki.mint(&TokenSpec {
                issuer: "https://issuer.example".to_owned(),
                ..alice()
            })),
            TOKEN_INVALID_MSG,
        ),
        (
            "a token not valid for another hour",
            header(pki.mint(&TokenSpec {
                now_s: now + 3_600,
                ..alice()
            })),
            TOKEN_INVALID_MSG,
        ),
    ];
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);

    for (what, auth, message) in &cases {
        let req = TransferRequest::new("alice", 1_000);
        let status = transfers
            .approve_as(auth, &req)
            .await
            .expect_err(&format!("ApproveTransfer with {what} must be refused"));
        assert_status(
            &format!("ApproveTransfer with {what}"),
            &status,
            Code::Unauthenticated,
        );
        assert_eq!(status.message(), *message, "ApproveTransfer with {what}");
        let lookup = Lookup::IdempotencyKey(IdempotencyKeyLookup {
            user_id: "alice".to_owned(),
            idempotency_key: req.idempotency_key.clone(),
        });
        assert_refused(
            &format!("GetTransfer with {what}"),
            transfers.get_as(auth, lookup).await,
            Code::Unauthenticated,
        );
        // Not recorded: alice herself does not find it.
        assert_refused(
            &format!("GetTransfer by alice of the key sent with {what}"),
            transfers.get_by_key(&req.key()).await,
            Code::NotFound,
        );
    }

    before
        .assert_unchanged(&cluster, "requests with bad tokens")
        .await;
    marks.assert_nothing_recorded(&cluster, "requests with bad tokens");
    let gateway_log = marks.since(&cluster, Service::Gateway);
    assert!(
        gateway_log.contains("request refused: not authenticated"),
        "the gateway does not log its refusals:\n{gateway_log}"
    );
    // A valid token is answered (whatever the outcome): the refusals above are about the
    // tokens.
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 1_000))
        .await;
    assert!(!t.transfer_id.is_empty(), "{t:?}");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_cannot_move_bobs_money() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);

    // alice's token; bob in the body, bob's accounts.
    let req = TransferRequest::new("bob", 10_000);
    assert_refused(
        "ApproveTransfer by alice of bob's money",
        transfers.approve_as(&Auth::user("alice"), &req).await,
        Code::PermissionDenied,
    );

    // No transfer: bob does not find one under that key, nor does the coordinator's log
    // hold one; no reservation at either participant; no intent in the gateway's log.
    assert_refused(
        "GetTransfer by bob of the key alice used",
        transfers.get_by_key(&req.key()).await,
        Code::NotFound,
    );
    before.assert_unchanged(&cluster, "alice's attempt").await;
    marks.assert_nothing_recorded(&cluster, "alice's attempt");
    let gateway_log = marks.since(&cluster, Service::Gateway);
    assert!(
        gateway_log.contains("ApproveTransfer refused: user_id is not the token's subject"),
        "the gateway does not log the refusal:\n{gateway_log}"
    );
    let report = cluster.assert_invariants().await;
    assert!(report.transfers.is_empty(), "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_cannot_read_bobs_transfer() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    // bob's transfer is recorded, whatever its outcome (the budget is not the point here).
    let req = TransferRequest::new("bob", 2_500);
    let (bobs, _) = transfers.approve_ok(&req).await;

    let alice = Auth::user("alice");
    let by_id = transfers
        .get_by_id("alice", &bobs.transfer_id)
        .await
        .expect_err("alice must not read bob's transfer by id");
    assert_status("GetTransfer by alice of bob's id", &by_id, Code::NotFound);
    let by_key = Lookup::IdempotencyKey(IdempotencyKeyLookup {
        user_id: "bob".to_owned(),
        idempotency_key: req.idempotency_key.clone(),
    });
    assert_refused(
        "GetTransfer by alice of bob's key",
        transfers.get_as(&alice, by_key).await,
        Code::NotFound,
    );
    // Exactly as for a transfer that does not exist, so ids cannot be probed.
    let missing_id = new_id();
    let missing = transfers
        .get_by_id("alice", &missing_id)
        .await
        .expect_err("an unknown id");
    assert_eq!(
        by_id.message().replace(&bobs.transfer_id, "<id>"),
        missing.message().replace(&missing_id, "<id>"),
        "bob's transfer and a missing one must look the same to alice"
    );
    // bob reads it.
    let read = transfers
        .get_by_id("bob", &bobs.transfer_id)
        .await
        .expect("bob reads his own transfer");
    assert_eq!(read.transfer_id, bobs.transfer_id);
    cluster.assert_invariants().await;
}

/// INVALID_ARGUMENT, with a message that neither echoes the value nor holds a control
/// character nor any database text.
fn assert_invalid<T: std::fmt::Debug>(what: &str, answer: Result<T, tonic::Status>, bad: &str) {
    let status = match answer {
        Ok(value) => panic!("{what}: expected INVALID_ARGUMENT, got an answer: {value:?}"),
        Err(status) => status,
    };
    assert_status(what, &status, Code::InvalidArgument);
    let message = status.message();
    assert!(
        !message.contains(bad),
        "{what}: the message echoes the value: {message:?}"
    );
    assert!(
        !message.chars().any(char::is_control),
        "{what}: the message holds a control character: {message:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_are_invalid_argument_everywhere_and_reveal_no_database() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let before = Books::read(&cluster).await;
    let marks = LogMarks::take(&cluster);
    send_every_bad_id(&cluster).await;
    before.assert_unchanged(&cluster, "malformed ids").await;
    assert_eq!(before.transfers_logged, 0, "{before:?}");
    marks.assert_nothing_recorded(&cluster, "malformed ids");
    cluster.assert_invariants().await;
}

/// Log injection: whatever a request carries reaches a log only checked or escaped, so
/// no NUL, no terminal escape and no line of the attacker's making.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_value_reaches_a_log_unchecked() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let marks = LogMarks::take(&cluster);
    send_every_bad_id(&cluster).await;
    for service in Service::ALL {
        let raw = marks.raw_since(&cluster, service);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !raw.contains(&0),
            "the {service} log holds a NUL byte:\n{text}"
        );
        assert!(
            !raw.contains(&0x1b),
            "the {service} log holds a terminal escape:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|line| line.trim_start().starts_with(FORGED_LOG_LINE)),
            "the {service} log holds a forged line:\n{text}"
        );
    }
}

/// Sends each of [`bad_ids`] in every id field of every service's API, each call as an
/// identity allowed to make it (so that only the id is wrong), and checks each answer:
/// INVALID_ARGUMENT, naming neither the value nor the database.
async fn send_every_bad_id(cluster: &Cluster) {
    let transfers = cluster.transfers();
    let clients = cluster.clients().clone();
    let alice = Auth::user("alice");

    for (what, bad) in bad_ids() {
        // The public API, as alice (her token is valid; the body is not).
        for field in [
            "user_id",
            "idempotency_key",
            "external_account_id",
            "internal_account_id",
        ] {
            let mut req = TransferRequest::new("alice", 1_000);
            match field {
                "user_id" => req.user_id = bad.clone(),
                "idempotency_key" => req.idempotency_key = bad.clone(),
                "external_account_id" => req.external_account_id = bad.clone(),
                _ => req.internal_account_id = bad.clone(),
            }
            assert_invalid(
                &format!("ApproveTransfer with {what} in {field}"),
                transfers.approve_as(&alice, &req).await,
                &bad,
            );
        }
        let lookups = [
            ("transfer_id", Lookup::TransferId(bad.clone())),
            (
                "idempotency_key",
                Lookup::IdempotencyKey(IdempotencyKeyLookup {
                    user_id: "alice".to_owned(),
                    idempotency_key: bad.clone(),
                }),
            ),
            (
                "user_id",
                Lookup::IdempotencyKey(IdempotencyKeyLookup {
                    user_id: bad.clone(),
                    idempotency_key: new_id(),
                }),
            ),
        ];
        for (field, lookup) in lookups {
            assert_invalid(
                &format!("GetTransfer with {what} in {field}"),
                transfers.get_as(&alice, lookup).await,
                &bad,
            );
        }

        // The participants' reservation calls, as the coordinator.
        for (participant, account, user) in PARTICIPANTS {
            let mut client =
                reservations(cluster.channel(participant, Caller::Service(Service::Gateway)));
            let at = |call: &str, field: &str| {
                format!("{call} at the {participant} with {what} in {field}")
            };
            let id = new_id();
            for (field, message) in [
                ("transfer_id", reserve(&bad, account, user, 1_000)),
                ("account_id", reserve(&id, &bad, user, 1_000)),
                ("user_id", reserve(&id, account, &bad, 1_000)),
            ] {
                assert_invalid(
                    &at("Reserve", field),
                    client.reserve(request(message)).await,
                    &bad,
                );
            }
            assert_no_reservation(cluster, &id, &at("Reserve", "its terms")).await;
            let confirm = ConfirmRequest {
                transfer_id: bad.clone(),
            };
            assert_invalid(
                &at("Confirm", "transfer_id"),
                client.confirm(request(confirm)).await,
                &bad,
            );
            let cancel = CancelRequest {
                transfer_id: bad.clone(),
            };
            assert_invalid(
                &at("Cancel", "transfer_id"),
                client.cancel(request(cancel)).await,
                &bad,
            );
            let read = GetReservationRequest {
                transfer_id: bad.clone(),
            };
            assert_invalid(
                &at("GetReservation", "transfer_id"),
                client.get_reservation(request(read)).await,
                &bad,
            );
        }

        // The account services, as the operator.
        assert_invalid(
            &format!("GetAccount at the external institution with {what}"),
            clients.external_account(&bad).await,
            &bad,
        );
        assert_invalid(
            &format!("GetAccount at the balance store with {what}"),
            clients.internal_account(&bad).await,
            &bad,
        );
        for (field, account_id, user_id) in [
            ("account_id", bad.clone(), "eve".to_owned()),
            ("user_id", "ext-eve".to_owned(), bad.clone()),
        ] {
            let open = external_pb::OpenAccountRequest {
                account_id: account_id.clone(),
                user_id: user_id.clone(),
                opening_balance: Some(usd(0)),
            };
            let answer = clients
                .external_accounts
                .clone()
                .open_account(request(open))
                .await;
            assert_invalid(
                &format!("OpenAccount at the external institution with {what} in {field}"),
                answer,
                &bad,
            );
            let open = balance_store_pb::OpenAccountRequest {
                account_id,
                user_id,
                opening_balance: Some(usd(0)),
            };
            let answer = clients
                .balance_store_accounts
                .clone()
                .open_account(request(open))
                .await;
            assert_invalid(
                &format!("OpenAccount at the balance store with {what} in {field}"),
                answer,
                &bad,
            );
        }
    }
}

/// A stolen coordinator key: Reserve and Confirm straight at the balance store, presenting
/// the gateway's certificate. The balance store cannot tell (the certificate is genuine),
/// so the reconciler's Audit must: a confirmed reservation that no transfer in the
/// coordinator's log explains.
///
/// The Audit reports exactly that: one unmatched reservation at the balance store, no
/// transfer behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_a_reservation_made_behind_the_coordinators_back() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let mut stolen =
        reservations(cluster.channel(Service::BalanceStore, Caller::Service(Service::Gateway)));
    let transfer_id = new_id();
    let held = stolen
        .reserve(request(reserve(&transfer_id, "int-bob", "bob", 100_000)))
        .await
        .expect("the balance store takes the gateway's certificate")
        .into_inner()
        .reservation
        .expect("a reservation");
    assert_eq!(held.status(), ReservationStatus::Held, "{held:?}");
    let confirm = ConfirmRequest {
        transfer_id: transfer_id.clone(),
    };
    let confirmed = stolen
        .confirm(request(confirm))
        .await
        .expect("Confirm with the gateway's certificate")
        .into_inner()
        .reservation
        .expect("a reservation");
    assert_eq!(
        confirmed.status(),
        ReservationStatus::Confirmed,
        "{confirmed:?}"
    );
    let int_bob = cluster
        .clients()
        .internal_account("int-bob")
        .await
        .expect("int-bob");
    assert_eq!(
        int_bob.available_minor_units, 100_000,
        "the theft worked: {int_bob:?}"
    );

    let audit = cluster
        .clients()
        .reconciler
        .clone()
        .audit(request(AuditRequest { limit: 0 }))
        .await
        .expect("Audit")
        .into_inner();
    assert_eq!(audit.unmatched_reservations.len(), 1, "{audit:?}");
    let found = &audit.unmatched_reservations[0];
    assert_eq!(found.participant(), Participant::BalanceStore, "{found:?}");
    assert_eq!(found.reason(), UnmatchedReason::NoTransfer, "{found:?}");
    assert_eq!(
        found.reservation.as_ref().map(|r| r.transfer_id.as_str()),
        Some(transfer_id.as_str()),
        "{found:?}"
    );
    // The confirmed credit itself explains int-bob's balance: the finding is the
    // reservation, not the balance.
    assert!(audit.unexplained_balances.is_empty(), "{audit:?}");
}
