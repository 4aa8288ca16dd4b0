//! Users through the public API: every call needs a valid bearer token (EdDSA, signed by
//! the configured key, for this issuer and audience, unexpired); an ApproveTransfer is
//! only for the token's own user; GetTransfer shows only the caller's own transfers and
//! answers for another user's exactly as for a missing one. A refused call records
//! nothing and calls no participant.

mod common;

use std::sync::Arc;

use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{
    GetTransferRequest, IdempotencyKeyLookup, TransferStatus, get_transfer_request,
};
use banktransfer_pki::token::{Claims, TokenSpec, mint_in_dir, sign_claims};
use common::{Gateway, approve_request, now_ms, open_store, spawn_gateway, status_of};
use coordinator::store::{SqlTransferStore, TransferStore};
use gateway_coordinator::Settings;
use service_kit::jwt::{
    AUTHORIZATION_HEADER, TOKEN_EXPIRED_MSG, TOKEN_INVALID_MSG, TOKEN_REQUIRED_MSG,
};
use testkit::db::TestDatabase;
use testkit::participants::FakeParticipants;
use testkit::pki::TestPki;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A budget long enough for a loaded machine: these tests are not about budgets.
fn roomy_settings() -> Settings {
    let mut settings = Settings::default();
    settings.common.budget.total_ms = 5_000;
    settings.common.budget.after_reserve_ms = 2_000;
    settings
}

/// An `authorization` value that must not authenticate alice, and the message it gets.
struct BadToken {
    what: &'static str,
    header: Option<String>,
    message: &'static str,
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// Claims the gateway would accept, but for `spec` changes.
fn mint(pki: &TestPki, edit: impl FnOnce(&mut TokenSpec)) -> String {
    let mut spec = TokenSpec::new("alice", now_ms() / 1000);
    edit(&mut spec);
    mint_in_dir(pki.dir(), &spec).expect("minting a test token")
}

fn bad_tokens(pki: &TestPki) -> Vec<BadToken> {
    let now_s = now_ms() / 1000;
    let signing_key = std::fs::read(pki.files().token_signing_key()).unwrap();
    let verify_key = std::fs::read(pki.files().token_verify_key()).unwrap();
    let expired = Claims {
        iat: now_s - 7_200,
        nbf: now_s - 7_200,
        exp: now_s - 3_600,
        ..TokenSpec::new("alice", now_s).claims()
    };
    // The classic confusion: HMAC "signed" with the public key as the shared secret.
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &TokenSpec::new("alice", now_s).claims(),
        &jsonwebtoken::EncodingKey::from_secret(&verify_key).unwrap(),
    )
    .unwrap();
    let foreign = TestPki::new().bearer("alice").to_str().unwrap().to_owned();
    vec![
        BadToken {
            what: "missing",
            header: None,
            message: TOKEN_REQUIRED_MSG,
        },
        BadToken {
            what: "not a bearer token",
            header: Some("Basic YWxpY2U6c2VjcmV0".into()),
            message: TOKEN_REQUIRED_MSG,
        },
        BadToken {
            what: "malformed",
            header: bearer("not.a.jwt"),
            message: TOKEN_INVALID_MSG,
        },
        BadToken {
            what: "expired",
            header: bearer(&sign_claims(&signing_key, &expired).unwrap()),
            message: TOKEN_EXPIRED_MSG,
        },
        BadToken {
            what: "signed by another PKI's key",
            header: Some(foreign),
            message: TOKEN_INVALID_MSG,
        },
        BadToken {
            what: "for another audience",
            header: bearer(&mint(pki, |spec| spec.audience = "another-service".into())),
            message: TOKEN_INVALID_MSG,
        },
        BadToken {
            what: "from another issuer",
            header: bearer(&mint(pki, |spec| {
                spec.issuer = "https://auth.elsewhere.example".into()
            })),
            message: TOKEN_INVALID_MSG,
        },
        BadToken {
            what: "HS256",
            header: bearer(&hs256),
            message: TOKEN_INVALID_MSG,
        },
    ]
}

/// `message` with `bad`'s `authorization` header (if any).
fn with_header<T>(message: T, bad: &BadToken) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(header) = &bad.header {
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, header.parse().unwrap());
    }
    request
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, bad: &BadToken) {
    let status = result.expect_err(bad.what);
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "{}: {status:?}",
        bad.what
    );
    assert_eq!(status.message(), bad.message, "{}", bad.what);
}

fn by_id(transfer_id: &str) -> GetTransferRequest {
    GetTransferRequest {
        lookup: Some(get_transfer_request::Lookup::TransferId(transfer_id.into())),
    }
}

fn by_key(user_id: &str, idempotency_key: &str) -> GetTransferRequest {
    GetTransferRequest {
        lookup: Some(get_transfer_request::Lookup::IdempotencyKey(
            IdempotencyKeyLookup {
                user_id: user_id.into(),
                idempotency_key: idempotency_key.into(),
            },
        )),
    }
}

/// A gateway over a fresh SQLite store and scripted participants (authentication comes
/// before anything that differs between back ends).
struct Fixture {
    gateway: Gateway,
    store: Arc<SqlTransferStore>,
    fake: Arc<FakeParticipants>,
    /// Bind it by name, not with `..`: the database must outlive the gateway.
    _db: TestDatabase,
}

async fn spawn(name: &str) -> Fixture {
    let db = testkit::db::sqlite(name);
    let store = open_store(&db).await;
    let fake = Arc::new(FakeParticipants::new());
    let gateway = spawn_gateway(roomy_settings(), store.clone(), fake.clone()).await;
    Fixture {
        gateway,
        store,
        fake,
        _db: db,
    }
}

#[tokio::test]
async fn approve_without_a_valid_token_is_unauthenticated_and_records_nothing() {
    let Fixture {
        gateway,
        store,
        fake,
        _db,
    } = spawn("authn_approve").await;
    let mut anonymous: TransferServiceClient<Channel> = gateway.client.without_token();
    for bad in bad_tokens(&gateway.pki) {
        let request = with_header(approve_request("alice", "k1", 250), &bad);
        assert_refused(anonymous.approve_transfer(request).await, &bad);
    }
    assert!(store.recent(10).await.unwrap().is_empty());
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    // The same request with alice's own token goes through.
    let transfer = gateway
        .client
        .clone()
        .approve_transfer(approve_request("alice", "k1", 250))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
    gateway.stop().await;
}

#[tokio::test]
async fn get_transfer_without_a_valid_token_is_unauthenticated() {
    let Fixture { gateway, _db, .. } = spawn("authn_get").await;
    let mut alice = gateway.client.clone();
    let transfer = alice
        .approve_transfer(approve_request("alice", "k1", 250))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    let mut anonymous = gateway.client.without_token();
    for bad in bad_tokens(&gateway.pki) {
        let request = with_header(by_id(&transfer.transfer_id), &bad);
        assert_refused(anonymous.get_transfer(request).await, &bad);
        let request = with_header(by_key("alice", "k1"), &bad);
        assert_refused(anonymous.get_transfer(request).await, &bad);
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_token_moves_only_its_own_users_money() {
    let Fixture {
        gateway,
        store,
        fake,
        _db,
    } = spawn("authn_other_user").await;
    let mut client = gateway.client.clone();
    let status = client
        .approve_transfer_as("alice", approve_request("bob", "k1", 250))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(store.recent(10).await.unwrap().is_empty());
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // Nor did it claim bob's idempotency key: bob's own request under it is new.
    let transfer = client
        .approve_transfer(approve_request("bob", "k1", 100))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(status_of(&transfer), TransferStatus::Succeeded);
    assert_eq!(transfer.amount.unwrap().minor_units, 100);
    gateway.stop().await;
}

#[tokio::test]
async fn another_users_transfer_is_not_found_exactly_as_a_missing_one() {
    let Fixture { gateway, _db, .. } = spawn("authn_not_yours").await;
    let mut client = gateway.client.clone();
    let bobs = client
        .approve_transfer(approve_request("bob", "k-bob", 250))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    let bobs_id = bobs.transfer_id.clone();
    // bob sees it both ways.
    let seen = client
        .get_transfer_as("bob", by_id(&bobs_id))
        .await
        .unwrap()
        .into_inner()
        .transfer
        .unwrap();
    assert_eq!(seen, bobs);
    client
        .get_transfer_as("bob", by_key("bob", "k-bob"))
        .await
        .unwrap();

    // alice: by id, as if it did not exist.
    let hidden = client
        .get_transfer_as("alice", by_id(&bobs_id))
        .await
        .unwrap_err();
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing = client
        .get_transfer_as("alice", by_id(&missing_id))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(
        hidden.message().replace(&bobs_id, "<id>"),
        missing.message().replace(&missing_id, "<id>")
    );

    // alice: by bob's idempotency key, as if bob had never used it.
    let hidden = client
        .get_transfer_as("alice", by_key("bob", "k-bob"))
        .await
        .unwrap_err();
    let missing = client
        .get_transfer_as("alice", by_key("bob", "k-never"))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(
        hidden.message().replace("k-bob", "<key>"),
        missing.message().replace("k-never", "<key>")
    );
    gateway.stop().await;
}
