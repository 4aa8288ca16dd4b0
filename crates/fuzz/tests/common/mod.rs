//! Shared by the property tests: strategies for requests as a client may send them:
//! mostly near-valid values with each rule broken now and then, and sometimes whatever
//! arbitrary bytes decode to.

#![allow(dead_code)] // each test file uses its own part

use banktransfer_api::money::v1 as money_pb;
use proptest::prelude::*;
use prost::Message;

/// An id: valid most of the time (a request has up to four, and a fifth of the requests
/// should pass validation); else empty, at or over the length limit, with a space, a
/// control or a non-ASCII character, or any string at all.
pub fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        24 => "[!-~]{1,12}",
        1 => "[!-~]{127,130}",
        1 => Just(String::new()),
        1 => "[!-~]{0,4} [!-~]{0,4}",
        1 => "[!-~]{0,4}[\u{0}-\u{1f}\u{7f}\u{80}-\u{10ffff}][!-~]{0,4}",
        1 => any::<String>(),
    ]
}

/// An amount: usually present, with minor units around zero, at the extremes or any,
/// and a currency that is valid, upper-case letters, mixed letters, or anything.
pub fn money() -> impl Strategy<Value = Option<money_pb::Money>> {
    let minor_units = prop_oneof![
        6 => 1i64..1_000_000,
        2 => -2i64..3,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ];
    let currency = prop_oneof![
        8 => Just("USD".to_owned()),
        2 => "[A-Z]{3}",
        1 => "[A-Za-z]{0,4}",
        1 => any::<String>(),
    ];
    proptest::option::weighted(
        0.9,
        (minor_units, currency).prop_map(|(minor_units, currency)| money_pb::Money {
            minor_units,
            currency,
        }),
    )
}

/// A request of type `M` as arbitrary bytes decode it (the empty request when they do
/// not decode: the server would refuse those before validation).
pub fn decoded<M: Message + Default + std::fmt::Debug>() -> impl Strategy<Value = M> {
    prop::collection::vec(any::<u8>(), 0..96)
        .prop_map(|bytes| M::decode(&bytes[..]).unwrap_or_default())
}

/// A current-thread runtime with timers, for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Two statuses are the same answer.
pub fn same_status(got: &tonic::Status, expected: &tonic::Status) -> bool {
    got.code() == expected.code() && got.message() == expected.message()
}
