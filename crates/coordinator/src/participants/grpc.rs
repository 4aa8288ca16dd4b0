//! [`Participants`] over gRPC: the external institution and our balance store both serve
//! `banktransfer.reservation.v1.ReservationService`, so one client type and one set of
//! conversions serve both.
//!
//! What a participant says is not passed on verbatim: a reserve's answer becomes the
//! transfer's `failure_reason`, which the gateway's clients read. A refusal is told by its
//! reason code alone ([`refusal_text`]: no balances, no other user's data, whatever the
//! participant wrote), an error by its status code alone ([`unknown_text`]: no database
//! or transport text). What the participant said is logged, escaped, with the transfer.

use std::time::Duration;

use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1::reservation_service_client::ReservationServiceClient;
use banktransfer_api::reservation::v1::{
    self as reservation_pb, CancelRequest, ConfirmRequest, GetReservationRequest,
    ListAccountsRequest, ListReservationsRequest, ReservationStatus, ReserveRequest,
};
use banktransfer_protocol::audit::{AccountStatement, BookReservation};
use banktransfer_protocol::transfer::{Leg, ReserveReply};
use service_kit::client::{TracedChannel, channel, warm_up, with_deadline};
use service_kit::traces::PropagateTrace;
use tonic::transport::{Channel, ClientTlsConfig};

use super::listing::{accounts_page, reservations_page};
use super::{CallError, Page, Participants, ReservationView, ReserveTerms};

#[derive(Clone, Debug)]
pub struct GrpcParticipants {
    /// Every call carries the current span's trace context: a transfer's participant
    /// calls belong to its trace.
    external: ReservationServiceClient<TracedChannel>,
    balance_store: ReservationServiceClient<TracedChannel>,
}

impl GrpcParticipants {
    /// Channels connect lazily: the coordinator starts even while a participant is down,
    /// and each call then fails (within its deadline) instead. Both speak TLS with `tls`
    /// (this service's certificate: the participants serve only the coordinator's
    /// identities).
    pub fn connect(
        external_url: &str,
        balance_store_url: &str,
        connect_timeout: Duration,
        tls: ClientTlsConfig,
    ) -> Result<GrpcParticipants, tonic::transport::Error> {
        let external = channel(external_url, connect_timeout, tls.clone())?;
        let balance_store = channel(balance_store_url, connect_timeout, tls)?;
        warm_up(&external, Leg::External.name(), connect_timeout);
        warm_up(&balance_store, Leg::BalanceStore.name(), connect_timeout);
        Ok(GrpcParticipants::from_channels(external, balance_store))
    }

    /// Over channels built elsewhere (the deterministic simulation dials its simulated
    /// network).
    pub fn from_channels(external: Channel, balance_store: Channel) -> GrpcParticipants {
        GrpcParticipants {
            external: service_kit::limit!(ReservationServiceClient::with_interceptor(
                external,
                PropagateTrace
            )),
            balance_store: service_kit::limit!(ReservationServiceClient::with_interceptor(
                balance_store,
                PropagateTrace
            )),
        }
    }
}

impl GrpcParticipants {
    /// The client of `leg`'s participant (clients are cheap handles on one channel).
    fn client(&self, leg: Leg) -> ReservationServiceClient<TracedChannel> {
        match leg {
            Leg::External => self.external.clone(),
            Leg::BalanceStore => self.balance_store.clone(),
        }
    }
}

impl Participants for GrpcParticipants {
    async fn reserve(&self, leg: Leg, terms: &ReserveTerms, timeout: Duration) -> ReserveReply {
        let request = with_deadline(reserve_request(terms), timeout);
        let result = self.client(leg).reserve(request).await;
        let result = result.map(|r| r.into_inner().reservation);
        log_reserve_detail(leg, &result);
        reserve_reply(result)
    }

    async fn confirm(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let request = with_deadline(
            ConfirmRequest {
                transfer_id: transfer_id.to_owned(),
            },
            timeout,
        );
        let result = self.client(leg).confirm(request).await;
        settled(
            "confirm",
            result.map(|r| r.into_inner().reservation),
            &[ReservationStatus::Confirmed],
        )
    }

    async fn cancel(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let request = with_deadline(
            CancelRequest {
                transfer_id: transfer_id.to_owned(),
            },
            timeout,
        );
        let result = self.client(leg).cancel(request).await;
        settled(
            "cancel",
            result.map(|r| r.into_inner().reservation),
            &[ReservationStatus::Cancelled, ReservationStatus::Refused],
        )
    }

    async fn get_reservation(
        &self,
        leg: Leg,
        transfer_id: &str,
        timeout: Duration,
    ) -> Result<ReservationView, CallError> {
        let request = with_deadline(
            GetReservationRequest {
                transfer_id: transfer_id.to_owned(),
            },
            timeout,
        );
        let result = self.client(leg).get_reservation(request).await;
        reservation_view(result.map(|r| r.into_inner().reservation))
    }

    async fn list_reservations(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        timeout: Duration,
    ) -> Result<Page<BookReservation>, CallError> {
        let request = with_deadline(
            ListReservationsRequest {
                page_size,
                page_token: page_token.to_owned(),
            },
            timeout,
        );
        let result = self.client(leg).list_reservations(request).await;
        reservations_page(result.map(tonic::Response::into_inner))
    }

    async fn list_accounts(
        &self,
        leg: Leg,
        page_size: u32,
        page_token: &str,
        timeout: Duration,
    ) -> Result<Page<AccountStatement>, CallError> {
        let request = with_deadline(
            ListAccountsRequest {
                page_size,
                page_token: page_token.to_owned(),
            },
            timeout,
        );
        let result = self.client(leg).list_accounts(request).await;
        accounts_page(result.map(tonic::Response::into_inner))
    }
}

fn reserve_request(terms: &ReserveTerms) -> ReserveRequest {
    ReserveRequest {
        transfer_id: terms.transfer_id.clone(),
        account_id: terms.account_id.clone(),
        user_id: terms.user_id.clone(),
        amount: Some(money_pb::Money {
            minor_units: terms.amount.minor_units(),
            currency: terms.amount.currency().as_str().to_owned(),
        }),
    }
}

/// The participant's own words on a reserve, for the log only (Debug escapes them).
fn log_reserve_detail(
    leg: Leg,
    result: &Result<Option<reservation_pb::Reservation>, tonic::Status>,
) {
    match result {
        Ok(Some(reservation)) if reservation.status() == ReservationStatus::Refused => {
            tracing::info!(
                leg = leg.name(),
                reason = reservation.refusal_reason().as_str_name(),
                message = ?reservation.refusal_message,
                "reserve refused"
            );
        }
        Err(status) => tracing::warn!(
            leg = leg.name(),
            code = ?status.code(),
            message = ?status.message(),
            "reserve failed"
        ),
        Ok(_) => {}
    }
}

/// A refusal as the transfer's `failure_reason` tells it: why, from the reason code, and
/// nothing else.
pub fn refusal_text(reason: reservation_pb::RefusalReason) -> &'static str {
    use reservation_pb::RefusalReason as R;
    match reason {
        R::InsufficientFunds => "insufficient funds",
        // One answer for both, so that account ids cannot be probed.
        R::AccountNotFound | R::AccountNotOwned => {
            "the account does not exist or is not the user's"
        }
        R::CurrencyMismatch => "the account holds another currency",
        R::Antifraud => "antifraud screening",
        R::LimitExceeded => "a transfer limit is exceeded",
        R::RateLimited => "too many transfers in a short time; retry later",
        R::Unspecified => "no reason given",
    }
}

/// The reason code (`RefusalReason::as_str`) of a refusal in a recorded failure text
/// ([`refusal_text`] backwards), for metrics' labels. The account answers share one text,
/// so both read as `account_not_found`.
pub fn refusal_code(failure_text: &str) -> Option<&'static str> {
    use banktransfer_protocol::reservation::RefusalReason as P;
    use reservation_pb::RefusalReason as R;
    [
        (R::InsufficientFunds, P::InsufficientFunds),
        (R::AccountNotFound, P::AccountNotFound),
        (R::CurrencyMismatch, P::CurrencyMismatch),
        (R::Antifraud, P::Antifraud),
        (R::LimitExceeded, P::LimitExceeded),
        (R::RateLimited, P::RateLimited),
    ]
    .into_iter()
    .find(|(pb, _)| failure_text.ends_with(refusal_text(*pb)))
    .map(|(_, reason)| reason.as_str())
}

/// A reserve that failed, as the transfer's `failure_reason` tells it: from the status
/// code only.
pub fn unknown_text(code: tonic::Code) -> String {
    match code {
        tonic::Code::Unavailable => "it is unavailable".into(),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => "no answer in time".into(),
        other => format!("it answered with an error ({other:?})"),
    }
}

pub(super) fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    }
}

/// HELD (or CONFIRMED, on a replay after a confirm) is a hold; REFUSED and CANCELLED
/// mean nothing is held; anything else leaves the hold unknown, which only an abort
/// makes safe.
fn reserve_reply(
    result: Result<Option<reservation_pb::Reservation>, tonic::Status>,
) -> ReserveReply {
    let reservation = match result {
        Ok(Some(reservation)) => reservation,
        Ok(None) => return ReserveReply::Unknown("reserve answered without a reservation".into()),
        Err(status) => return ReserveReply::Unknown(unknown_text(status.code())),
    };
    match reservation.status() {
        ReservationStatus::Held | ReservationStatus::Confirmed => ReserveReply::Held,
        ReservationStatus::Refused => {
            ReserveReply::Refused(refusal_text(reservation.refusal_reason()).to_owned())
        }
        ReservationStatus::Cancelled => {
            ReserveReply::Refused("cancelled before the reserve arrived".into())
        }
        ReservationStatus::Unspecified => {
            ReserveReply::Unknown("reserve answered with an unspecified status".into())
        }
    }
}

/// A confirm or cancel counts only when the reservation ends in one of `expected`.
fn settled(
    operation: &str,
    result: Result<Option<reservation_pb::Reservation>, tonic::Status>,
    expected: &[ReservationStatus],
) -> Result<(), CallError> {
    match result {
        Ok(Some(reservation)) if expected.contains(&reservation.status()) => Ok(()),
        Ok(Some(reservation)) => Err(CallError(format!(
            "{operation} left the reservation {}",
            reservation.status().as_str_name()
        ))),
        Ok(None) => Err(CallError(format!(
            "{operation} answered without a reservation"
        ))),
        Err(status) => Err(CallError(format!(
            "{operation} failed: {:?}: {}",
            status.code(),
            status_text(&status)
        ))),
    }
}

fn reservation_view(
    result: Result<Option<reservation_pb::Reservation>, tonic::Status>,
) -> Result<ReservationView, CallError> {
    match result {
        Err(status) if status.code() == tonic::Code::NotFound => Ok(ReservationView::NotFound),
        Err(status) => Err(CallError(format!(
            "get_reservation failed: {:?}: {}",
            status.code(),
            status_text(&status)
        ))),
        Ok(None) => Err(CallError(
            "get_reservation answered without a reservation".into(),
        )),
        Ok(Some(reservation)) => match reservation.status() {
            ReservationStatus::Held => Ok(ReservationView::Held),
            ReservationStatus::Confirmed => Ok(ReservationView::Confirmed),
            ReservationStatus::Cancelled => Ok(ReservationView::Cancelled),
            ReservationStatus::Refused => Ok(ReservationView::Refused),
            ReservationStatus::Unspecified => Err(CallError(
                "get_reservation answered with an unspecified status".into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(status: ReservationStatus, message: &str) -> reservation_pb::Reservation {
        reservation_pb::Reservation {
            transfer_id: "t".into(),
            status: status as i32,
            refusal_message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reserve_answers_map_to_held_refused_or_unknown() {
        let held = reserve_reply(Ok(Some(reservation(ReservationStatus::Held, ""))));
        assert_eq!(held, ReserveReply::Held);
        let replayed = reserve_reply(Ok(Some(reservation(ReservationStatus::Confirmed, ""))));
        assert_eq!(replayed, ReserveReply::Held);
        let tombstone = reserve_reply(Ok(Some(reservation(ReservationStatus::Cancelled, ""))));
        assert_eq!(
            tombstone,
            ReserveReply::Refused("cancelled before the reserve arrived".into())
        );
        let down = reserve_reply(Err(tonic::Status::unavailable("connection refused")));
        assert_eq!(down, ReserveReply::Unknown("it is unavailable".into()));
        let silent = reserve_reply(Err(tonic::Status::deadline_exceeded("")));
        assert_eq!(silent, ReserveReply::Unknown("no answer in time".into()));
        assert!(matches!(reserve_reply(Ok(None)), ReserveReply::Unknown(_)));
        let unspecified = reserve_reply(Ok(Some(reservation(ReservationStatus::Unspecified, ""))));
        assert!(matches!(unspecified, ReserveReply::Unknown(_)));
    }

    #[test]
    fn a_refusal_is_told_by_its_reason_code_alone() {
        let refused = |reason: reservation_pb::RefusalReason, message: &str| {
            let mut refused = reservation(ReservationStatus::Refused, message);
            refused.refusal_reason = reason as i32;
            match reserve_reply(Ok(Some(refused))) {
                ReserveReply::Refused(why) => why,
                other => panic!("{other:?}"),
            }
        };
        let why = refused(
            reservation_pb::RefusalReason::InsufficientFunds,
            "insufficient funds: 1234 minor units available, 5000 requested",
        );
        assert_eq!(why, "insufficient funds");
        // Not found and not owned read the same: account ids cannot be probed.
        assert_eq!(
            refused(
                reservation_pb::RefusalReason::AccountNotOwned,
                "account ext-bob does not belong to user alice"
            ),
            refused(reservation_pb::RefusalReason::AccountNotFound, "")
        );
        for reason in [
            reservation_pb::RefusalReason::CurrencyMismatch,
            reservation_pb::RefusalReason::Antifraud,
            reservation_pb::RefusalReason::LimitExceeded,
            reservation_pb::RefusalReason::RateLimited,
            reservation_pb::RefusalReason::Unspecified,
        ] {
            let why = refused(reason, "user mallory\nINFO forged line, balance 1234");
            assert!(
                !why.is_empty() && !why.contains("1234") && !why.contains('\n'),
                "{why}"
            );
        }
    }

    #[test]
    fn a_failed_reserve_is_told_by_its_code_alone() {
        let detail = "error returned from database: invalid byte sequence; password=hunter2";
        for status in [
            tonic::Status::internal(detail),
            tonic::Status::unknown(detail),
            tonic::Status::unavailable(detail),
            tonic::Status::already_exists(detail),
        ] {
            let ReserveReply::Unknown(why) = reserve_reply(Err(status.clone())) else {
                panic!("{status:?}")
            };
            assert!(
                !why.contains("database") && !why.contains("hunter2"),
                "{why}"
            );
        }
        assert_eq!(
            unknown_text(tonic::Code::Internal),
            "it answered with an error (Internal)"
        );
    }

    #[test]
    fn confirm_and_cancel_count_only_in_the_expected_state() {
        let confirmed = [ReservationStatus::Confirmed];
        assert!(
            settled(
                "confirm",
                Ok(Some(reservation(ReservationStatus::Confirmed, ""))),
                &confirmed
            )
            .is_ok()
        );
        let err = settled(
            "confirm",
            Ok(Some(reservation(ReservationStatus::Cancelled, ""))),
            &confirmed,
        )
        .unwrap_err();
        assert!(err.0.contains("CANCELLED"), "{err}");
        let err = settled(
            "confirm",
            Err(tonic::Status::failed_precondition("already cancelled")),
            &confirmed,
        )
        .unwrap_err();
        assert!(err.0.contains("already cancelled"), "{err}");
        let released = [ReservationStatus::Cancelled, ReservationStatus::Refused];
        assert!(
            settled(
                "cancel",
                Ok(Some(reservation(ReservationStatus::Refused, ""))),
                &released
            )
            .is_ok()
        );
    }

    #[test]
    fn a_missing_reservation_reads_as_not_found() {
        assert_eq!(
            reservation_view(Err(tonic::Status::not_found("no such transfer"))),
            Ok(ReservationView::NotFound)
        );
        assert_eq!(
            reservation_view(Ok(Some(reservation(ReservationStatus::Held, "")))),
            Ok(ReservationView::Held)
        );
        assert!(reservation_view(Err(tonic::Status::unavailable("down"))).is_err());
    }

    #[test]
    fn reserve_request_carries_the_terms() {
        let terms = ReserveTerms {
            transfer_id: "t-1".into(),
            user_id: "alice".into(),
            account_id: "ext-a".into(),
            amount: banktransfer_protocol::money::Money::positive(1234, "EUR").unwrap(),
        };
        let request = reserve_request(&terms);
        assert_eq!(request.transfer_id, "t-1");
        assert_eq!(request.account_id, "ext-a");
        assert_eq!(request.user_id, "alice");
        let amount = request.amount.unwrap();
        assert_eq!(
            (amount.minor_units, amount.currency.as_str()),
            (1234, "EUR")
        );
    }
}
