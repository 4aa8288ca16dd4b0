//! `banktransfer-load run` for two seconds at a low rate against a debug cluster (the
//! binaries `cargo build --bins` put next to this test's executable): the ledger check
//! and the harness's full invariant check pass, and the counts add up. Nothing here is
//! about speed: no latency is asserted.

use std::process::Command;

use serde_json::Value;

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn sum(map: &Value) -> u64 {
    map.as_object()
        .unwrap_or_else(|| panic!("not a map: {map}"))
        .values()
        .map(count)
        .sum()
}

#[test]
fn a_short_open_loop_run_keeps_the_ledger_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    let status = Command::new(env!("CARGO_BIN_EXE_banktransfer-load"))
        .args([
            "run",
            "--users",
            "12",
            "--rate",
            "10",
            "--duration-s",
            "2",
            "--warmup-s",
            "0",
            "--no-progress",
            "--full-check",
            "--rest-timeout-s",
            "60",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("banktransfer-load runs");
    assert!(status.success(), "banktransfer-load run failed: {status}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let load = &result["load"];
    let ledger = &result["ledger"];
    assert_eq!(ledger["ok"], Value::Bool(true), "{ledger}");
    assert_eq!(ledger["full_check"], Value::Bool(true), "{ledger}");

    // 10/s for 2 s: 20 due, each either sent or not; every sent one answered.
    assert_eq!(count(&load["scheduled"]), 20, "{load}");
    let sent = count(&load["sent"]);
    assert_eq!(sent + count(&load["not_sent"]), 20, "{load}");
    assert_eq!(count(&load["answered"]), sent, "{load}");
    assert_eq!(sum(&load["grpc_codes"]), sent, "{load}");
    let ok = load["grpc_codes"].get("OK").map_or(0, count);
    assert_eq!(sum(&load["transfer_outcomes"]), ok, "{load}");
    let succeeded = count(&load["succeeded"]);
    assert_eq!(
        load["transfer_outcomes"].get("SUCCEEDED").map_or(0, count),
        succeeded
    );
    assert!(succeeded > 0, "nothing SUCCEEDED: {load}");

    // Every cent the client saw SUCCEEDED (answers plus lookups at rest) moved once on
    // each side.
    let client = ledger["client_succeeded_minor"].as_i64().unwrap();
    assert_eq!(client, ledger["external_debited_minor"].as_i64().unwrap());
    assert_eq!(
        client,
        ledger["balance_store_credited_minor"].as_i64().unwrap()
    );
    assert_eq!(
        u64::try_from(client).unwrap(),
        succeeded + count(&ledger["looked_up_succeeded"]),
        "{ledger}"
    );
    assert_eq!(count(&ledger["unresolved"]), 0);
}
