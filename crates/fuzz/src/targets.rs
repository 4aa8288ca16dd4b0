//! One target per request a server decodes from the network and validates. Each calls
//! the service's own validation by name (the gateway's `convert`, the participants'
//! `grpc::convert`, the mock's `fault_injection::parse`), so a change to validation is
//! fuzzed as it lands; none re-implements a rule.

use std::hint::black_box;

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::gateway::v1 as gateway_pb;
use banktransfer_api::reservation::v1 as reservation_pb;
use gateway_coordinator::convert::{Lookup, TransferRequest};
use mock_external_institution::fault_injection;
use participant::grpc::convert;
use prost::Message;
use tonic::Status;

use crate::{MESSAGE_BYTES_MAX, Outcome};

/// The gateway's default `amount_minor_max`, the bound its validation applies (read once:
/// the settings are not built per input).
static AMOUNT_MINOR_MAX: std::sync::LazyLock<i64> =
    std::sync::LazyLock::new(|| gateway_coordinator::Settings::default().amount_minor_max);

/// A request a server decodes and validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Gateway, `TransferService.ApproveTransfer`.
    ApproveTransfer,
    /// Gateway, `TransferService.GetTransfer`.
    GetTransfer,
    /// Both participants, `ReservationService.Reserve`.
    Reserve,
    /// Both participants, `ReservationService.Confirm`.
    Confirm,
    /// Both participants, `ReservationService.Cancel`.
    Cancel,
    /// Both participants, `ReservationService.GetReservation`.
    GetReservation,
    /// External institution, `ExternalInstitutionService.OpenAccount`.
    ExternalOpenAccount,
    /// External institution, `ExternalInstitutionService.GetAccount`.
    ExternalGetAccount,
    /// Balance store, `BalanceStoreService.OpenAccount`.
    BalanceStoreOpenAccount,
    /// Balance store, `BalanceStoreService.GetAccount`.
    BalanceStoreGetAccount,
    /// Mock external institution, `FaultInjectionService.InjectFault` (ClearFaults and
    /// ListFaults take empty messages: nothing to validate).
    InjectFault,
}

impl Target {
    pub const ALL: [Target; 11] = [
        Target::ApproveTransfer,
        Target::GetTransfer,
        Target::Reserve,
        Target::Confirm,
        Target::Cancel,
        Target::GetReservation,
        Target::ExternalOpenAccount,
        Target::ExternalGetAccount,
        Target::BalanceStoreOpenAccount,
        Target::BalanceStoreGetAccount,
        Target::InjectFault,
    ];

    /// The target's name: its libFuzzer binary and its corpus directory.
    pub fn name(self) -> &'static str {
        match self {
            Target::ApproveTransfer => "approve_transfer",
            Target::GetTransfer => "get_transfer",
            Target::Reserve => "reserve",
            Target::Confirm => "confirm",
            Target::Cancel => "cancel",
            Target::GetReservation => "get_reservation",
            Target::ExternalOpenAccount => "external_open_account",
            Target::ExternalGetAccount => "external_get_account",
            Target::BalanceStoreOpenAccount => "balance_store_open_account",
            Target::BalanceStoreGetAccount => "balance_store_get_account",
            Target::InjectFault => "inject_fault",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Decodes `data` as this target's request, as the server would, and validates it.
    pub fn check(self, data: &[u8]) -> Outcome {
        match self {
            Target::ApproveTransfer => {
                decode_then(data, |request: gateway_pb::ApproveTransferRequest| {
                    let request = TransferRequest::parse(request, *AMOUNT_MINOR_MAX)?;
                    black_box(request.fingerprint());
                    Ok(())
                })
            }
            Target::GetTransfer => decode_then(data, |request: gateway_pb::GetTransferRequest| {
                black_box(Lookup::try_from(request)?);
                Ok(())
            }),
            Target::Reserve => decode_then(data, |request: reservation_pb::ReserveRequest| {
                black_box(convert::reserve_request(request)?);
                Ok(())
            }),
            // Confirm, cancel and reads validate their one id as the handlers do.
            Target::Confirm => decode_then(data, |request: reservation_pb::ConfirmRequest| {
                transfer_id(request.transfer_id)
            }),
            Target::Cancel => decode_then(data, |request: reservation_pb::CancelRequest| {
                transfer_id(request.transfer_id)
            }),
            Target::GetReservation => {
                decode_then(data, |request: reservation_pb::GetReservationRequest| {
                    transfer_id(request.transfer_id)
                })
            }
            Target::ExternalOpenAccount => {
                decode_then(data, |request: external_pb::OpenAccountRequest| {
                    open_account(request.account_id, request.user_id, request.opening_balance)
                })
            }
            Target::ExternalGetAccount => {
                decode_then(data, |request: external_pb::GetAccountRequest| {
                    account_id(request.account_id)
                })
            }
            Target::BalanceStoreOpenAccount => {
                decode_then(data, |request: balance_store_pb::OpenAccountRequest| {
                    open_account(request.account_id, request.user_id, request.opening_balance)
                })
            }
            Target::BalanceStoreGetAccount => {
                decode_then(data, |request: balance_store_pb::GetAccountRequest| {
                    account_id(request.account_id)
                })
            }
            Target::InjectFault => decode_then(data, |request: external_pb::InjectFaultRequest| {
                black_box(fault_injection::parse(&request)?);
                Ok(())
            }),
        }
    }
}

/// The server's steps: refuse what is over the message limit, decode, validate.
fn decode_then<M: Message + Default>(
    data: &[u8],
    validate: impl FnOnce(M) -> Result<(), Status>,
) -> Outcome {
    if data.len() > MESSAGE_BYTES_MAX {
        return Outcome::TooLarge;
    }
    let Ok(request) = M::decode(data) else {
        return Outcome::DecodeError;
    };
    match validate(request) {
        Ok(()) => Outcome::Valid,
        Err(status) => Outcome::Refused {
            code: status.code(),
            message_bytes: status.message().len(),
        },
    }
}

fn transfer_id(transfer_id: String) -> Result<(), Status> {
    black_box(convert::id("transfer_id", transfer_id)?);
    Ok(())
}

fn account_id(account_id: String) -> Result<(), Status> {
    black_box(convert::id("account_id", account_id)?);
    Ok(())
}

fn open_account(
    account_id: String,
    user_id: String,
    opening_balance: Option<banktransfer_api::money::v1::Money>,
) -> Result<(), Status> {
    black_box(convert::new_account(account_id, user_id, opening_balance)?);
    Ok(())
}
