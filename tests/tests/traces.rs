//! Traces through the real binaries: every service exports to an OTLP receiver inside the
//! test (`OTEL_EXPORTER_OTLP_ENDPOINT`, as a deployment sets it), and the spans must make
//! one trace per transfer, with the parent links of the calls that were really made.

use std::time::Duration;

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::otlp::{OtlpReceiver, ReceivedSpan, describe};
use banktransfer_e2e::{Cluster, ClusterConfig, PausePoint, TransferRequest, scenarios};

const PATIENCE: Duration = Duration::from_secs(15);
const GATEWAY: &str = "gateway-coordinator";
const EXTERNAL: &str = "mock-external-institution";
const BALANCE_STORE: &str = "internal-balance-store";
const RECONCILER: &str = "reconciler";

fn traced(receiver: &OtlpReceiver) -> ClusterConfig {
    ClusterConfig {
        otlp_endpoint: Some(receiver.endpoint().to_owned()),
        ..ClusterConfig::default()
    }
}

/// The one span of `service` named `name` (optionally with `leg`) in `spans`.
fn one<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    leg: Option<&str>,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .filter(|s| leg.is_none_or(|leg| s.attributes.get("leg").map(String::as_str) == Some(leg)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {service} span {name} (leg {leg:?}) expected:\n{}",
        describe(spans)
    );
    found[0]
}

/// The server span of a participant's `method` (`.../Reserve`) in `spans`.
fn served<'a>(spans: &'a [ReceivedSpan], service: &str, method: &str) -> &'a ReceivedSpan {
    let suffix = format!("ReservationService/{method}");
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == service && s.name.ends_with(&suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {service} {method} expected:\n{}",
        describe(spans)
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transfer_is_one_trace_across_the_gateway_and_both_participants() {
    let receiver = OtlpReceiver::start().await;
    let cluster = Cluster::start(traced(&receiver)).await;
    let request = TransferRequest::new("alice", 25_000);
    let (transfer, elapsed) = cluster.transfers().approve_ok(&request).await;
    eprintln!("[e2e] answered in {elapsed:?}: {transfer:?}");
    assert_eq!(transfer.status(), TransferStatus::Succeeded, "{transfer:?}");
    let id = transfer.transfer_id.clone();

    // The gateway's `transfer` span (it ends last) names the trace; wait until the
    // participants' spans of that trace are in too.
    let in_trace = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        let Some(root) = spans.iter().find(|s| {
            s.service == GATEWAY
                && s.name == "transfer"
                && s.attributes.get("transfer_id") == Some(&id)
        }) else {
            return Vec::new();
        };
        spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id)
            .cloned()
            .collect()
    };
    let spans = receiver
        .wait_for("complete trace of the transfer", PATIENCE, |spans| {
            let trace = in_trace(spans);
            let count = |service: &str| trace.iter().filter(|s| s.service == service).count();
            let settled = |service: &str| {
                trace
                    .iter()
                    .filter(|s| s.service == service && s.name.ends_with("/Confirm"))
                    .count()
                    == 1
            };
            count(GATEWAY) >= 9 && settled(EXTERNAL) && settled(BALANCE_STORE)
        })
        .await;
    let trace = in_trace(&spans);
    eprintln!("[e2e] the transfer's trace:\n{}", describe(&trace));

    // The gateway: the ApproveTransfer call is the root (the client sent no trace
    // context); the transfer under it; every protocol step under the transfer.
    let approve = one(
        &trace,
        GATEWAY,
        "banktransfer.gateway.v1.TransferService/ApproveTransfer",
        None,
    );
    assert_eq!(approve.parent_span_id, "", "the call is the trace's root");
    let transfer_span = one(&trace, GATEWAY, "transfer", None);
    assert_eq!(transfer_span.parent_span_id, approve.span_id);
    let steps = [
        ("intent", None),
        ("reserve", Some("external institution")),
        ("reserve", Some("balance store")),
        ("decision", None),
        ("confirm", Some("external institution")),
        ("confirm", Some("balance store")),
        ("outcome", None),
    ];
    for (name, leg) in steps {
        let step = one(&trace, GATEWAY, name, leg);
        assert_eq!(
            step.parent_span_id, transfer_span.span_id,
            "{name} {leg:?} is a step of the transfer"
        );
    }
    assert!(
        trace.iter().all(|s| s.name != "cancel"),
        "a transfer that succeeded cancels nothing"
    );

    // Each participant: its Reserve and Confirm calls are children of the gateway step
    // that made them (the traceparent crossed the TLS hop), and its own work sits under
    // the call.
    for (service, leg) in [
        (EXTERNAL, "external institution"),
        (BALANCE_STORE, "balance store"),
    ] {
        for (method, step) in [("Reserve", "reserve"), ("Confirm", "confirm")] {
            let call = served(&trace, service, method);
            let caller = one(&trace, GATEWAY, step, Some(leg));
            assert_eq!(
                call.parent_span_id, caller.span_id,
                "{service} {method} is called by the gateway's {step} ({leg})"
            );
            assert!(
                trace
                    .iter()
                    .any(|s| s.service == service && s.parent_span_id == call.span_id),
                "{service} {method} has its own work under it:\n{}",
                describe(&trace)
            );
        }
    }
    assert!(
        spans
            .iter()
            .filter(|s| s.trace_id == transfer_span.trace_id)
            .all(|s| s.service != RECONCILER),
        "the reconciler had nothing to do with a transfer its request finished"
    );

    // A replay of the same request is a trace of its own, linked to the transfer's span.
    let original = (
        transfer_span.trace_id.clone(),
        transfer_span.span_id.clone(),
    );
    let (replayed, _) = cluster.transfers().approve_ok(&request).await;
    assert_eq!(replayed.transfer_id, id, "the same transfer comes back");
    let spans = receiver
        .wait_for("the replay's linked span", PATIENCE, |spans| {
            spans.iter().any(|s| {
                s.service == GATEWAY && s.name == "transfer" && s.links.contains(&original)
            })
        })
        .await;
    let replay = spans
        .iter()
        .find(|s| s.service == GATEWAY && s.name == "transfer" && s.links.contains(&original))
        .expect("found above");
    assert_ne!(replay.trace_id, original.0, "a new request, a new trace");
    assert_eq!(replay.attributes.get("transfer_id"), Some(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_links_its_work_to_the_transfer_trace() {
    let receiver = OtlpReceiver::start().await;
    let mut config = traced(&receiver).timed();
    config.gateway.pause_at = PausePoint::AfterDecision;
    let mut cluster = Cluster::start(config).await;
    // The gateway is SIGKILLed after the decision; the reconciler confirms both sides.
    scenarios::gateway_killed_at(&mut cluster, PausePoint::AfterDecision).await;

    // The transfer's trace: the one the participants' Reserve calls belong to (the
    // gateway's own spans may have died with it, unexported).
    let spans = receiver
        .wait_for("the reconciler's linked span", PATIENCE, |spans| {
            let Some(reserve) = spans
                .iter()
                .find(|s| s.service == EXTERNAL && s.name.ends_with("ReservationService/Reserve"))
            else {
                return false;
            };
            spans.iter().any(|s| {
                s.service == RECONCILER
                    && s.name == "reconcile"
                    && s.links.iter().any(|(trace, _)| *trace == reserve.trace_id)
            })
        })
        .await;
    let reserve = served(&spans, EXTERNAL, "Reserve");
    let original = reserve.trace_id.clone();
    let reconcile: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == RECONCILER && s.name == "reconcile")
        .filter(|s| s.links.iter().any(|(trace, _)| *trace == original))
        .collect();
    eprintln!("[e2e] received:\n{}", describe(&spans));
    for span in &reconcile {
        assert_ne!(
            span.trace_id, original,
            "the reconciler's work is a trace of its own, linked, not a child"
        );
        assert_eq!(
            span.parent_span_id, "",
            "nobody waits on the reconciler's pass"
        );
    }
    // Whichever pass confirmed: the participants' Confirm calls belong either to the
    // original trace (the gateway confirmed before it died) or to a reconcile trace.
    let reconcile_traces: Vec<&str> = reconcile.iter().map(|s| s.trace_id.as_str()).collect();
    for service in [EXTERNAL, BALANCE_STORE] {
        let confirms: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.service == service && s.name.ends_with("ReservationService/Confirm"))
            .collect();
        assert!(!confirms.is_empty(), "{service} was confirmed");
        for confirm in confirms {
            assert!(
                confirm.trace_id == original
                    || reconcile_traces.contains(&confirm.trace_id.as_str()),
                "{service}'s Confirm belongs to the transfer's traces:\n{}",
                describe(&spans)
            );
            assert_ne!(
                confirm.parent_span_id, "",
                "{service}'s Confirm has a caller"
            );
        }
    }
}
