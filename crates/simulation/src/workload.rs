//! The users: each a turmoil client sending ApproveTransfer and GetTransfer calls with
//! their own deadlines, from a seeded stream of its own: new transfers (some beyond the
//! user's funds, some above the antifraud threshold), retries of earlier keys (the same
//! request, or the key reused for other terms), and reads. Every answer is recorded for
//! the final checks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use banktransfer_api::gateway::v1::transfer_service_client::TransferServiceClient;
use banktransfer_api::gateway::v1::{
    ApproveTransferRequest, GetTransferRequest, IdempotencyKeyLookup, Transfer, TransferStatus,
    get_transfer_request,
};
use banktransfer_api::money::v1 as money_pb;
use tonic::transport::Channel;

use crate::net::{self, ChannelSettings};
use crate::rng::SimRng;
use crate::trace::SharedLog;
use crate::world::{ANTIFRAUD_THRESHOLD_MINOR, CURRENCY, GATEWAY, GATEWAY_PORT, User};

/// What a user asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Approve { amount_minor: i64 },
    Get,
}

/// What a user was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    Transfer {
        transfer_id: String,
        status: TransferStatus,
        user_id: String,
        idempotency_key: String,
        amount_minor: i64,
    },
    /// An error status (or the user's own deadline: DEADLINE_EXCEEDED).
    Error(tonic::Code),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Observation {
    pub user_id: String,
    pub idempotency_key: String,
    pub call: Call,
    pub deadline_ms: u64,
    /// Simulated time the answer arrived.
    pub answered_at_ms: u64,
    pub answer: Answer,
}

/// One user's part of the run.
pub struct UserPlan {
    pub user: User,
    pub seed: u64,
    /// The user stops sending once its clock passes this.
    pub until_ms: u64,
    pub observations: Arc<Mutex<Vec<Observation>>>,
    pub log: SharedLog,
}

/// How often a user retries a request whose outcome it does not know.
const RETRY_UNSURE_PER_MILLION: u64 = 750_000;

fn now_ms() -> u64 {
    u64::try_from(turmoil::sim_elapsed().unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn amount(rng: &mut SimRng, user: &User) -> i64 {
    let roll = rng.below(100);
    // Amounts are small next to the opening balances, so that most transfers can
    // succeed; some exceed what is left, some need the antifraud review.
    let minor = if roll < 75 {
        rng.between(1, 40)
    } else if roll < 88 {
        rng.between(200, u64::try_from(user.opening_minor).unwrap_or(0) + 300)
    } else {
        let threshold = u64::try_from(ANTIFRAUD_THRESHOLD_MINOR).expect("positive threshold");
        rng.between(threshold, threshold + 100)
    };
    i64::try_from(minor).expect("small amounts fit")
}

pub async fn run(plan: UserPlan) -> turmoil::Result {
    let UserPlan {
        user,
        seed,
        until_ms,
        observations,
        log,
    } = plan;
    let mut rng = SimRng::new(seed);
    let mut client = TransferServiceClient::new(net::channel(
        GATEWAY,
        GATEWAY_PORT,
        ChannelSettings::default(),
    ));
    // Keys sent so far, with the amount first sent under each.
    let mut sent: Vec<(String, i64)> = Vec::new();
    // A request whose outcome the user does not know yet (an error, or PROCESSING):
    // clients retry those under the same key, soon.
    let mut unsure: Option<(String, i64)> = None;
    while now_ms() < until_ms {
        let retry = unsure
            .take()
            .filter(|_| rng.chance(RETRY_UNSURE_PER_MILLION));
        let pause_ms = if retry.is_some() {
            rng.between(10, 300)
        } else {
            rng.between(5, 250)
        };
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        // Mostly within the gateway's 200 ms budget, sometimes shorter, sometimes longer.
        let deadline_ms = rng.between(60, 600);
        let roll = rng.below(100);
        let (key, call) = if let Some((key, amount_minor)) = retry {
            (key, Call::Approve { amount_minor })
        } else if roll < 65 || sent.is_empty() {
            let key = format!("{}-k{}", user.user_id, sent.len());
            let amount_minor = amount(&mut rng, &user);
            sent.push((key.clone(), amount_minor));
            (key, Call::Approve { amount_minor })
        } else {
            let (key, first_amount) = rng.pick(&sent).clone();
            if roll < 80 {
                (
                    key,
                    Call::Approve {
                        amount_minor: first_amount,
                    },
                )
            } else if roll < 85 {
                (
                    key,
                    Call::Approve {
                        amount_minor: first_amount + 1,
                    },
                )
            } else {
                (key, Call::Get)
            }
        };
        let answer = send(&mut client, &user, &key, &call, deadline_ms).await;
        if let Call::Approve { amount_minor } = call {
            let processing = matches!(
                answer,
                Answer::Transfer {
                    status: TransferStatus::Processing,
                    ..
                }
            );
            // ALREADY_EXISTS and INVALID_ARGUMENT are answers; anything else leaves the
            // outcome unknown.
            let unknown = matches!(
                answer,
                Answer::Error(code)
                    if !matches!(code, tonic::Code::AlreadyExists | tonic::Code::InvalidArgument)
            );
            if processing || unknown {
                unsure = Some((key.clone(), amount_minor));
            }
        }
        let observation = Observation {
            user_id: user.user_id.clone(),
            idempotency_key: key,
            call,
            deadline_ms,
            answered_at_ms: now_ms(),
            answer,
        };
        log.push(observation.answered_at_ms, describe(&observation));
        observations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observation);
    }
    Ok(())
}

async fn send(
    client: &mut TransferServiceClient<Channel>,
    user: &User,
    key: &str,
    call: &Call,
    deadline_ms: u64,
) -> Answer {
    let deadline = Duration::from_millis(deadline_ms);
    let authorization: tonic::metadata::MetadataValue<_> = crate::tokens::bearer(&user.user_id)
        .parse()
        .expect("a token is a valid header value");
    let result = match call {
        Call::Approve { amount_minor } => {
            let mut request = service_kit::client::with_deadline(
                ApproveTransferRequest {
                    idempotency_key: key.to_owned(),
                    user_id: user.user_id.clone(),
                    external_account_id: user.external_account_id.clone(),
                    internal_account_id: user.internal_account_id.clone(),
                    amount: Some(money_pb::Money {
                        minor_units: *amount_minor,
                        currency: CURRENCY.to_owned(),
                    }),
                },
                deadline,
            );
            request
                .metadata_mut()
                .insert("authorization", authorization);
            tokio::time::timeout(deadline, client.approve_transfer(request))
                .await
                .map(|r| r.map(|r| r.into_inner().transfer))
        }
        Call::Get => {
            let mut request = service_kit::client::with_deadline(
                GetTransferRequest {
                    lookup: Some(get_transfer_request::Lookup::IdempotencyKey(
                        IdempotencyKeyLookup {
                            user_id: user.user_id.clone(),
                            idempotency_key: key.to_owned(),
                        },
                    )),
                },
                deadline,
            );
            request
                .metadata_mut()
                .insert("authorization", authorization);
            tokio::time::timeout(deadline, client.get_transfer(request))
                .await
                .map(|r| r.map(|r| r.into_inner().transfer))
        }
    };
    match result {
        Err(_elapsed) => Answer::Error(tonic::Code::DeadlineExceeded),
        Ok(Err(status)) => Answer::Error(status.code()),
        Ok(Ok(None)) => Answer::Error(tonic::Code::Internal),
        Ok(Ok(Some(transfer))) => transfer_answer(&transfer),
    }
}

fn transfer_answer(transfer: &Transfer) -> Answer {
    Answer::Transfer {
        transfer_id: transfer.transfer_id.clone(),
        status: transfer.status(),
        user_id: transfer.user_id.clone(),
        idempotency_key: transfer.idempotency_key.clone(),
        amount_minor: transfer.amount.as_ref().map_or(0, |a| a.minor_units),
    }
}

fn describe(observation: &Observation) -> String {
    let call = match &observation.call {
        Call::Approve { amount_minor } => format!("approve {amount_minor}"),
        Call::Get => "get".to_owned(),
    };
    let answer = match &observation.answer {
        Answer::Transfer {
            transfer_id,
            status,
            ..
        } => format!("{} {transfer_id}", status.as_str_name()),
        Answer::Error(code) => format!("error {code:?}"),
    };
    format!(
        "{} {call} key={} ({} ms) -> {answer}",
        observation.user_id, observation.idempotency_key, observation.deadline_ms
    )
}
