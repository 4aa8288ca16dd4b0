//! The services' Prometheus endpoints, through the real binaries: after one transfer the
//! gateway counts it by outcome and its ApproveTransfer call by code, the participants time
//! their store operations, the reconciler publishes its backlog, and every scrape is valid
//! Prometheus text (`promtool check metrics`, when installed).

use std::time::Duration;

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_e2e::metrics::{promtool_check, scrape, value};
use banktransfer_e2e::{Cluster, ClusterConfig, Service, TransferRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transfer_is_counted_by_outcome_method_and_store_operation() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let (t, _) = cluster
        .transfers()
        .approve_ok(&TransferRequest::new("alice", 25_000))
        .await;
    assert_eq!(t.status(), TransferStatus::Succeeded, "{t:?}");
    let endpoints = cluster.endpoints().clone();

    // The outcome's write lands after the answer (the gateway answers SUCCEEDED once both
    // legs confirmed): scrape until it is counted, within a bound.
    let outcome_count = r#"banktransfer_store_duration_seconds_count{operation="record_outcome"}"#;
    let mut gateway = scrape(endpoints.metrics_port(Service::Gateway)).await;
    for _ in 0..50 {
        if value(&gateway, outcome_count).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        gateway = scrape(endpoints.metrics_port(Service::Gateway)).await;
    }
    assert_eq!(
        value(
            &gateway,
            r#"banktransfer_transfers_total{outcome="succeeded",failure_reason=""}"#
        ),
        Some(1.0),
        "{gateway}"
    );
    let approve = r#"service="banktransfer.gateway.v1.TransferService",method="ApproveTransfer""#;
    assert_eq!(
        value(
            &gateway,
            &format!("grpc_server_requests_total{{{approve},code=\"OK\"}}")
        ),
        Some(1.0),
        "{gateway}"
    );
    assert_eq!(
        value(
            &gateway,
            &format!("grpc_server_request_duration_seconds_count{{{approve}}}")
        ),
        Some(1.0),
        "{gateway}"
    );
    for operation in ["record_intent", "decide", "record_outcome"] {
        assert_eq!(
            value(
                &gateway,
                &format!("banktransfer_store_duration_seconds_count{{operation=\"{operation}\"}}")
            ),
            Some(1.0),
            "{operation}: {gateway}"
        );
    }
    assert!(
        value(
            &gateway,
            r#"banktransfer_db_pool_connections{state="idle"}"#
        )
        .is_some(),
        "{gateway}"
    );
    promtool_check(&gateway);

    for participant in [Service::External, Service::BalanceStore] {
        let scraped = scrape(endpoints.metrics_port(participant)).await;
        for operation in ["reserve", "confirm"] {
            assert_eq!(
                value(
                    &scraped,
                    &format!(
                        "banktransfer_store_duration_seconds_count{{operation=\"{operation}\"}}"
                    )
                ),
                Some(1.0),
                "{participant:?} {operation}: {scraped}"
            );
        }
        promtool_check(&scraped);
    }

    // The reconciler publishes its backlog on every pass: once a pass has run after the
    // transfer finished (one may have caught it committed, not yet succeeded), nothing is
    // unfinished.
    let port = endpoints.metrics_port(Service::Reconciler);
    let backlog = |scraped: &str, state: &str| {
        value(
            scraped,
            &format!("banktransfer_reconciler_backlog{{state=\"{state}\"}}"),
        )
    };
    let mut reconciler = scrape(port).await;
    for _ in 0..100 {
        if ["started", "committed", "aborted"]
            .iter()
            .all(|state| backlog(&reconciler, state) == Some(0.0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reconciler = scrape(port).await;
    }
    for state in ["started", "committed", "aborted"] {
        assert_eq!(
            value(
                &reconciler,
                &format!("banktransfer_reconciler_backlog{{state=\"{state}\"}}")
            ),
            Some(0.0),
            "{state}: {reconciler}"
        );
    }
    assert_eq!(
        value(
            &reconciler,
            "banktransfer_reconciler_backlog_oldest_age_seconds"
        ),
        Some(0.0),
        "{reconciler}"
    );
    promtool_check(&reconciler);
    cluster.assert_invariants().await;
    // The invariants ran the reconciler's audit: it published its (zero) mismatches.
    let audited = scrape(port).await;
    assert_eq!(
        value(&audited, "banktransfer_audit_mismatches"),
        Some(0.0),
        "{audited}"
    );
}
