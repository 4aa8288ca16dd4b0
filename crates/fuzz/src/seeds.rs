//! The corpus every run starts from: per target, the valid request, the same request
//! with each field broken in each way validation knows (empty, one byte over the id
//! limit, a space, a control or a non-ASCII character; zero, negative, extreme and
//! missing amounts; malformed, unknown and huge currencies; unknown enum values), and framing
//! variants of the valid encoding (truncated, repeated, unknown fields, a length prefix
//! far past the end, a field near the message limit). Mutating these reaches every
//! branch of validation within seconds; random bytes alone mostly fail to decode.

use banktransfer_api::balance_store::v1 as balance_store_pb;
use banktransfer_api::external::v1 as external_pb;
use banktransfer_api::gateway::v1 as gateway_pb;
use banktransfer_api::money::v1 as money_pb;
use banktransfer_api::reservation::v1 as reservation_pb;
use prost::Message;

use crate::{MESSAGE_BYTES_MAX, Target};

/// The seed inputs of `target`; the first is a valid request.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let mut seeds = match target {
        Target::ApproveTransfer => with_fields(4, true, |ids, amount| {
            gateway_pb::ApproveTransferRequest {
                idempotency_key: ids[0].clone(),
                user_id: ids[1].clone(),
                external_account_id: ids[2].clone(),
                internal_account_id: ids[3].clone(),
                amount,
            }
            .encode_to_vec()
        }),
        Target::GetTransfer => get_transfer(),
        Target::Reserve => with_fields(3, true, |ids, amount| {
            reservation_pb::ReserveRequest {
                transfer_id: ids[0].clone(),
                account_id: ids[1].clone(),
                user_id: ids[2].clone(),
                amount,
            }
            .encode_to_vec()
        }),
        Target::Confirm => with_fields(1, false, |ids, _| {
            reservation_pb::ConfirmRequest {
                transfer_id: ids[0].clone(),
            }
            .encode_to_vec()
        }),
        Target::Cancel => with_fields(1, false, |ids, _| {
            reservation_pb::CancelRequest {
                transfer_id: ids[0].clone(),
            }
            .encode_to_vec()
        }),
        Target::GetReservation => with_fields(1, false, |ids, _| {
            reservation_pb::GetReservationRequest {
                transfer_id: ids[0].clone(),
            }
            .encode_to_vec()
        }),
        Target::ExternalOpenAccount => with_fields(2, true, |ids, opening_balance| {
            external_pb::OpenAccountRequest {
                account_id: ids[0].clone(),
                user_id: ids[1].clone(),
                opening_balance,
            }
            .encode_to_vec()
        }),
        Target::ExternalGetAccount => with_fields(1, false, |ids, _| {
            external_pb::GetAccountRequest {
                account_id: ids[0].clone(),
            }
            .encode_to_vec()
        }),
        Target::BalanceStoreOpenAccount => with_fields(2, true, |ids, opening_balance| {
            balance_store_pb::OpenAccountRequest {
                account_id: ids[0].clone(),
                user_id: ids[1].clone(),
                opening_balance,
            }
            .encode_to_vec()
        }),
        Target::BalanceStoreGetAccount => with_fields(1, false, |ids, _| {
            balance_store_pb::GetAccountRequest {
                account_id: ids[0].clone(),
            }
            .encode_to_vec()
        }),
        Target::InjectFault => inject_fault(),
    };
    let valid = seeds[0].clone();
    seeds.extend(framings(&valid));
    seeds
}

/// A valid id, then ids that break each rule of `check_id`.
fn ids() -> Vec<String> {
    vec![
        "id-1".into(),
        String::new(),
        "x".repeat(128),
        "x".repeat(129),
        "has space".into(),
        "caf\u{e9}".into(),
        "nul\u{0}".into(),
        "\u{1b}[2J".into(),
    ]
}

/// A valid amount, then amounts that break each money rule.
fn amounts() -> Vec<Option<money_pb::Money>> {
    let money = |minor_units: i64, currency: &str| {
        Some(money_pb::Money {
            minor_units,
            currency: currency.into(),
        })
    };
    vec![
        money(500, "USD"),
        None,
        money(0, "USD"),
        money(-1, "USD"),
        money(i64::MAX, "USD"),
        money(i64::MIN, "USD"),
        money(1, "EUR"),
        money(1, "usd"),
        money(1, ""),
        money(1, "USDX"),
        money(1, "XXX"),
        money(1, "\u{0}SD"),
        // A currency near the message limit: a refusal must not echo it back whole.
        money(1, &"U".repeat(MESSAGE_BYTES_MAX - 256)),
    ]
}

/// The valid request (`id_count` valid ids and, if `with_amount`, a valid amount), then
/// the same with one field replaced by each broken value.
fn with_fields(
    id_count: usize,
    with_amount: bool,
    encode: impl Fn(&[String], Option<money_pb::Money>) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    let ids = ids();
    let amounts = amounts();
    let valid_ids: Vec<String> = (0..id_count).map(|i| format!("{}-{i}", ids[0])).collect();
    let valid_amount = if with_amount {
        amounts[0].clone()
    } else {
        None
    };
    let mut seeds = vec![encode(&valid_ids, valid_amount.clone())];
    for field in 0..id_count {
        for bad in &ids[1..] {
            let mut broken = valid_ids.clone();
            broken[field] = bad.clone();
            seeds.push(encode(&broken, valid_amount.clone()));
        }
    }
    if with_amount {
        for amount in &amounts[1..] {
            seeds.push(encode(&valid_ids, amount.clone()));
        }
    }
    seeds
}

fn get_transfer() -> Vec<Vec<u8>> {
    use gateway_pb::get_transfer_request::Lookup;
    let by_id = |transfer_id: &String| gateway_pb::GetTransferRequest {
        lookup: Some(Lookup::TransferId(transfer_id.clone())),
    };
    let by_key = |user_id: &String, idempotency_key: &String| gateway_pb::GetTransferRequest {
        lookup: Some(Lookup::IdempotencyKey(gateway_pb::IdempotencyKeyLookup {
            user_id: user_id.clone(),
            idempotency_key: idempotency_key.clone(),
        })),
    };
    let ids = ids();
    let valid = &ids[0];
    let mut requests = vec![by_id(valid), by_key(valid, valid)];
    for bad in &ids[1..] {
        requests.extend([by_id(bad), by_key(bad, valid), by_key(valid, bad)]);
    }
    requests.push(gateway_pb::GetTransferRequest { lookup: None });
    requests.iter().map(Message::encode_to_vec).collect()
}

fn inject_fault() -> Vec<Vec<u8>> {
    let request = |operation: i32, kind: i32, latency_ms: u32, calls: u32| {
        external_pb::InjectFaultRequest {
            operation,
            kind,
            latency_ms,
            calls,
        }
        .encode_to_vec()
    };
    let latency = external_pb::FaultKind::Latency as i32;
    let mut seeds = vec![request(
        external_pb::Operation::Reserve as i32,
        latency,
        100,
        1,
    )];
    // Every operation with every kind, the unspecified zero values and an unknown value
    // (99) and a negative one (-1, a ten-byte varint) included.
    for operation in [0, 1, 2, 3, 4, 99, -1] {
        for kind in [0, 1, 2, 3, 4, 99, -1] {
            seeds.push(request(operation, kind, 100, 0));
        }
    }
    for latency_ms in [0, 1, 60_000, 60_001, u32::MAX] {
        for calls in [0, 1, u32::MAX] {
            seeds.push(request(1, latency, latency_ms, calls));
        }
    }
    seeds
}

/// Framing variants of a valid encoding: what decode, rather than validation, must cope
/// with.
fn framings(valid: &[u8]) -> Vec<Vec<u8>> {
    let mut seeds = vec![Vec::new()];
    if !valid.is_empty() {
        seeds.push(valid[..valid.len() - 1].to_vec());
    }
    // The message twice: the last value of each field wins.
    seeds.push([valid, valid].concat());
    // An unknown varint field (number 15) and an unknown length-delimited one (13).
    seeds.push(
        [
            valid,
            &[15 << 3, 0x96, 0x01],
            &[(13 << 3) | 2, 3, b'a', b'b', b'c'],
        ]
        .concat(),
    );
    // A length-delimited field (number 1) whose length prefix says 2^31 - 1 bytes.
    seeds.push([valid, &[(1 << 3) | 2, 0xff, 0xff, 0xff, 0xff, 0x07]].concat());
    // An unknown group nested deeper than prost's recursion limit.
    let depth = 120;
    let start_group = (14 << 3) | 3;
    let end_group = (14 << 3) | 4;
    seeds.push(
        [
            valid,
            &vec![start_group; depth][..],
            &vec![end_group; depth][..],
        ]
        .concat(),
    );
    // Field 1 (a string in every request but InjectFault) near the message limit.
    let long = MESSAGE_BYTES_MAX - 8;
    let mut near_limit = vec![(1 << 3) | 2];
    prost::encoding::encode_varint(long as u64, &mut near_limit);
    near_limit.resize(near_limit.len() + long, b'x');
    seeds.push(near_limit);
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_seed_of_every_target_is_valid() {
        for target in Target::ALL {
            let seeds = seeds(target);
            assert_eq!(
                target.check(&seeds[0]),
                crate::Outcome::Valid,
                "{}",
                target.name()
            );
            assert!(seeds.iter().all(|s| s.len() <= MESSAGE_BYTES_MAX));
        }
    }
}
