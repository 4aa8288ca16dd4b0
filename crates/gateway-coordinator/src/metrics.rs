//! The gateway's own metrics (names per `deploy/monitoring/README.md`):
//! `banktransfer_transfers_total{outcome,failure_reason}` for every ApproveTransfer answer
//! and `banktransfer_admission_refusals_total{reason}` for every request refused before any
//! work. Labels are from small fixed sets: the recorded failure text is mapped to a reason
//! code, never copied.

use banktransfer_protocol::transfer::ClientStatus;
use coordinator::participants::refusal_code;
use coordinator::store::TransferRecord;
use service_kit::metrics::{ADMISSION_REFUSALS_TOTAL, TRANSFERS_TOTAL, counter};

/// Why a request was refused before any work (`reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The process-wide `in_flight_max`.
    InFlightMax,
    /// The user's own in-flight cap (`admission.per_user_in_flight_max`).
    PerUserInFlightMax,
    /// The adaptive concurrency limit, or too many users tracked at once.
    AtCapacity,
    /// The request's remaining deadline is shorter than transfers currently take.
    DeadlineTooShort,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::InFlightMax => "in_flight_max",
            Refusal::PerUserInFlightMax => "per_user_in_flight_max",
            Refusal::AtCapacity => "at_capacity",
            Refusal::DeadlineTooShort => "deadline_too_short",
        }
    }
}

pub fn count_refusal(refusal: Refusal) {
    counter!(ADMISSION_REFUSALS_TOTAL, "reason" => refusal.as_str()).increment(1);
}

/// Counts the answer ApproveTransfer gives with `record`.
pub fn count_transfer(record: &TransferRecord) {
    let (outcome, failure_reason) = match record.state.client_status() {
        ClientStatus::Succeeded => ("succeeded", ""),
        ClientStatus::Processing => ("processing", ""),
        ClientStatus::Failed => (
            "failed",
            failure_label(record.failure_reason.as_deref().unwrap_or_default()),
        ),
    };
    counter!(TRANSFERS_TOTAL, "outcome" => outcome, "failure_reason" => failure_reason)
        .increment(1);
}

/// The recorded failure text (`"<participant> refused: <why>"`, `"<participant> did not
/// answer the reserve: <why>"`, `"stale"`, ...) as a reason code: the refusing
/// participant's reason, `unavailable` when a participant could not be reached, else
/// `deadline` (the budget ran out before a decision).
fn failure_label(text: &str) -> &'static str {
    if let Some(code) = refusal_code(text) {
        code
    } else if text.contains("did not answer") && !text.contains("no answer in time") {
        "unavailable"
    } else {
        "deadline"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts_map_to_reason_codes() {
        assert_eq!(
            failure_label("balance store refused: antifraud screening"),
            "antifraud"
        );
        assert_eq!(
            failure_label("external institution refused: insufficient funds"),
            "insufficient_funds"
        );
        assert_eq!(
            failure_label("balance store did not answer the reserve: it is unavailable"),
            "unavailable"
        );
        assert_eq!(
            failure_label("balance store did not answer the reserve: no answer in time"),
            "deadline"
        );
        assert_eq!(failure_label("stale"), "deadline");
    }
}
