//! No invalid request reaches a participant's store: the ReservationService and both
//! account services, over a book that records every call, driven with arbitrary
//! requests. Whenever validation (`participant::grpc::convert`, called here directly)
//! refuses a request, the service answers with that very status and the book saw no
//! call; whenever it accepts one, the book saw exactly one call, carrying the validated
//! values.

mod common;

use std::sync::{Arc, Mutex};

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::balance_store::v1::balance_store_service_server::BalanceStoreService;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::external::v1::external_institution_service_server::ExternalInstitutionService;
use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1 as pb;
use banktransfer_api::reservation::v1::reservation_service_server::ReservationService;
use banktransfer_protocol::audit::AccountStatement;
use banktransfer_protocol::ids::check_id;
use banktransfer_protocol::reservation::{
    AccountView, Reservation, ReserveOutcome, SettleOutcome, Side, Terms,
};
use common::{decoded, id, money, runtime, same_status};
use participant::grpc::{AccountsApi, NoGate, Participant, ReservationApi, convert};
use participant::{NewAccount, NoScreening, OpenOutcome, ReservationBook, StoreError};
use proptest::prelude::*;
use service_kit::clock::ManualClock;
use service_kit::tls::{PeerIdentity, SpiffeId};
use testkit::memory_book::MemoryBook;
use tonic::{Request, Status};

/// One call a service made on its book, with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BookCall {
    Reserve { transfer_id: String, terms: Terms },
    Confirm { transfer_id: String },
    Cancel { transfer_id: String },
    GetReservation { transfer_id: String },
    OpenAccount { account: NewAccount },
    GetAccount { account_id: String },
}

/// The in-memory book, recording every call before it answers.
#[derive(Clone)]
struct RecordingBook {
    book: MemoryBook,
    calls: Arc<Mutex<Vec<BookCall>>>,
}

impl RecordingBook {
    fn new() -> RecordingBook {
        RecordingBook {
            book: MemoryBook::new(Side::Credit, NoScreening),
            calls: Arc::default(),
        }
    }

    fn record(&self, call: BookCall) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<BookCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl ReservationBook for RecordingBook {
    async fn reserve(
        &self,
        transfer_id: &str,
        terms: Terms,
        now_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        self.record(BookCall::Reserve {
            transfer_id: transfer_id.to_owned(),
            terms: terms.clone(),
        });
        self.book.reserve(transfer_id, terms, now_ms).await
    }

    async fn confirm(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        self.record(BookCall::Confirm {
            transfer_id: transfer_id.to_owned(),
        });
        self.book.confirm(transfer_id, now_ms).await
    }

    async fn cancel(&self, transfer_id: &str, now_ms: u64) -> Result<SettleOutcome, StoreError> {
        self.record(BookCall::Cancel {
            transfer_id: transfer_id.to_owned(),
        });
        self.book.cancel(transfer_id, now_ms).await
    }

    async fn get_reservation(&self, transfer_id: &str) -> Result<Option<Reservation>, StoreError> {
        self.record(BookCall::GetReservation {
            transfer_id: transfer_id.to_owned(),
        });
        self.book.get_reservation(transfer_id).await
    }

    async fn open_account(
        &self,
        account: NewAccount,
        now_ms: u64,
    ) -> Result<OpenOutcome, StoreError> {
        self.record(BookCall::OpenAccount {
            account: account.clone(),
        });
        self.book.open_account(account, now_ms).await
    }

    async fn get_account(&self, account_id: &str) -> Result<Option<AccountView>, StoreError> {
        self.record(BookCall::GetAccount {
            account_id: account_id.to_owned(),
        });
        self.book.get_account(account_id).await
    }

    // The audit's listings read; no request field reaches them unchecked (page tokens are
    // validated in the handler), and these tests do not send them.
    async fn list_reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.book.list_reservations(after, limit).await
    }

    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountStatement>, StoreError> {
        self.book.list_accounts(after, limit).await
    }
}

/// `message` from the operator: the account services authorize by certificate identity,
/// which the server shell puts in the request's extensions.
fn as_operator<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .extensions_mut()
        .insert(PeerIdentity::Spiffe(SpiffeId::OPERATOR));
    request
}

/// A fresh participant over a fresh recording book: its two services and the book.
fn participant() -> (
    ReservationApi<RecordingBook>,
    AccountsApi<RecordingBook>,
    RecordingBook,
) {
    let book = RecordingBook::new();
    let participant = Arc::new(Participant::new(
        book.clone(),
        Arc::new(ManualClock::new(1_000)),
    ));
    (
        ReservationApi::new(Arc::clone(&participant), NoGate),
        AccountsApi::new(participant),
        book,
    )
}

/// The rule: a refused request is answered with validation's status and makes no call;
/// an accepted one makes exactly `expected_call`, whose ids pass validation.
fn check<T: std::fmt::Debug>(
    validated: Result<BookCall, Status>,
    answer: &Result<T, Status>,
    calls: &[BookCall],
) -> Result<(), TestCaseError> {
    match validated {
        Err(refusal) => {
            prop_assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
            let got = answer.as_ref().expect_err("a refused request was answered");
            prop_assert!(same_status(got, &refusal), "{got:?} != {refusal:?}");
            prop_assert!(calls.is_empty(), "refused, yet the book saw {calls:?}");
        }
        Ok(expected_call) => {
            prop_assert_eq!(calls, &[expected_call][..]);
            for id in ids_of(&calls[0]) {
                prop_assert!(check_id("id", id).is_ok(), "{id:?} reached the book");
            }
        }
    }
    Ok(())
}

fn ids_of(call: &BookCall) -> Vec<&str> {
    match call {
        BookCall::Reserve { transfer_id, terms } => {
            vec![transfer_id, &terms.account_id, &terms.user_id]
        }
        BookCall::Confirm { transfer_id }
        | BookCall::Cancel { transfer_id }
        | BookCall::GetReservation { transfer_id } => vec![transfer_id],
        BookCall::OpenAccount { account } => vec![&account.account_id, &account.user_id],
        BookCall::GetAccount { account_id } => vec![account_id],
    }
}

fn reserve_request() -> impl Strategy<Value = pb::ReserveRequest> {
    prop_oneof![
        4 => (id(), id(), id(), money()).prop_map(|(transfer_id, account_id, user_id, amount)| {
            pb::ReserveRequest { transfer_id, account_id, user_id, amount }
        }),
        1 => decoded::<pb::ReserveRequest>(),
    ]
}

/// An OpenAccount's fields, from either generator.
fn open_account_fields() -> impl Strategy<Value = (String, String, Option<money_pb::Money>)> {
    prop_oneof![
        4 => (id(), id(), money()),
        1 => decoded::<external_pb::OpenAccountRequest>()
            .prop_map(|r| (r.account_id, r.user_id, r.opening_balance)),
    ]
}

/// A transfer id, from either generator.
fn transfer_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => id(),
        1 => decoded::<pb::ConfirmRequest>().prop_map(|r| r.transfer_id),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

#[test]
fn an_invalid_reserve_never_reaches_the_book() {
    let rt = runtime();
    proptest!(config(), |(request in reserve_request())| {
        let validated = convert::reserve_request(request.clone())
            .map(|(transfer_id, terms)| BookCall::Reserve { transfer_id, terms });
        let (reservations, _, book) = participant();
        let answer = rt.block_on(reservations.reserve(Request::new(request)));
        check(validated, &answer, &book.calls())?;
    });
}

#[test]
fn an_invalid_confirm_cancel_or_read_never_reaches_the_book() {
    let rt = runtime();
    proptest!(config(), |(transfer_id in transfer_id(), which in 0..3u8)| {
        let validated = convert::id("transfer_id", transfer_id.clone());
        let (reservations, _, book) = participant();
        let (answer, expected) = rt.block_on(async {
            match which {
                0 => (
                    reservations
                        .confirm(Request::new(pb::ConfirmRequest { transfer_id }))
                        .await
                        .map(drop),
                    validated.map(|transfer_id| BookCall::Confirm { transfer_id }),
                ),
                1 => (
                    reservations
                        .cancel(Request::new(pb::CancelRequest { transfer_id }))
                        .await
                        .map(drop),
                    validated.map(|transfer_id| BookCall::Cancel { transfer_id }),
                ),
                _ => (
                    reservations
                        .get_reservation(Request::new(pb::GetReservationRequest { transfer_id }))
                        .await
                        .map(drop),
                    validated.map(|transfer_id| BookCall::GetReservation { transfer_id }),
                ),
            }
        });
        check(expected, &answer, &book.calls())?;
    });
}

#[test]
fn an_invalid_open_account_never_reaches_either_participants_book() {
    let rt = runtime();
    proptest!(config(), |((account_id, user_id, opening_balance) in open_account_fields(), external: bool)| {
        let validated = convert::new_account(account_id.clone(), user_id.clone(), opening_balance.clone())
            .map(|account| BookCall::OpenAccount { account });
        let (_, accounts, book) = participant();
        let answer = rt.block_on(async {
            if external {
                let request = external_pb::OpenAccountRequest { account_id, user_id, opening_balance };
                ExternalInstitutionService::open_account(&accounts, as_operator(request)).await.map(drop)
            } else {
                let request = balance_store_pb::OpenAccountRequest { account_id, user_id, opening_balance };
                BalanceStoreService::open_account(&accounts, as_operator(request)).await.map(drop)
            }
        });
        check(validated, &answer, &book.calls())?;
    });
}

#[test]
fn an_invalid_get_account_never_reaches_either_participants_book() {
    let rt = runtime();
    proptest!(config(), |(account_id in transfer_id(), external: bool)| {
        let validated = convert::id("account_id", account_id.clone())
            .map(|account_id| BookCall::GetAccount { account_id });
        let (_, accounts, book) = participant();
        let answer = rt.block_on(async {
            if external {
                let request = external_pb::GetAccountRequest { account_id };
                ExternalInstitutionService::get_account(&accounts, as_operator(request)).await.map(drop)
            } else {
                let request = balance_store_pb::GetAccountRequest { account_id };
                BalanceStoreService::get_account(&accounts, as_operator(request)).await.map(drop)
            }
        });
        check(validated, &answer, &book.calls())?;
    });
}

/// The property can fail: a book call for a request that validation refuses is caught.
#[test]
fn the_rule_catches_a_call_made_for_a_refused_request() {
    let refused = convert::id("transfer_id", String::new())
        .map(|transfer_id| BookCall::Confirm { transfer_id });
    let leaked = [BookCall::Confirm {
        transfer_id: String::new(),
    }];
    let answer: Result<(), Status> = Err(refused.clone().unwrap_err());
    assert!(check(refused, &answer, &leaked).is_err());
}
