//! Business refusals: the transfer is FAILED with a reason, nothing moves, and any hold
//! already taken is released.

use banktransfer_api::gateway::v1::TransferStatus;
use banktransfer_api::reservation::v1::Reservation;
use banktransfer_api::reservation::v1::{RefusalReason, ReservationStatus};
use banktransfer_e2e::{Cluster, ClusterConfig, TransferRequest};
use tonic::Code;

/// REFUSED for `reason` (a later cancel may have turned a refusal into CANCELLED, which
/// the contract allows).
fn assert_refused(reservation: &Reservation, reason: RefusalReason) {
    match reservation.status() {
        ReservationStatus::Refused => {
            assert_eq!(reservation.refusal_reason(), reason, "{reservation:?}");
        }
        ReservationStatus::Cancelled => {
            eprintln!("[e2e] refusal later cancelled: {reservation:?}");
        }
        other => panic!("expected REFUSED ({reason:?}), got {other:?}: {reservation:?}"),
    }
}

fn assert_untouched(report: &banktransfer_e2e::invariants::Report, user: &str, opening: i64) {
    let ext = &report.accounts[&format!("ext-{user}")];
    assert_eq!(
        (
            ext.available_minor_units,
            ext.reserved_minor_units,
            ext.confirmed_minor_units
        ),
        (opening, 0, 0),
        "ext-{user} is untouched"
    );
    let int = &report.accounts[&format!("int-{user}")];
    assert_eq!(
        (
            int.available_minor_units,
            int.reserved_minor_units,
            int.confirmed_minor_units
        ),
        (0, 0, 0),
        "int-{user} is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_fails_and_moves_nothing() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 150_000))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let reason = t.failure_reason.to_lowercase();
    assert!(
        reason.contains("insufficient funds") || reason.contains("insufficient_funds"),
        "the reason should mention insufficient funds: {:?}",
        t.failure_reason
    );
    let ext = cluster
        .clients()
        .external_reservation(&t.transfer_id)
        .await
        .expect("the external institution saw the reserve");
    assert_refused(&ext, RefusalReason::InsufficientFunds);

    let report = cluster.assert_invariants().await;
    assert_untouched(&report, "alice", 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn antifraud_refusal_releases_the_external_hold() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let threshold = cluster.config().rules.antifraud_review_threshold_minor;
    let transfers = cluster.transfers();
    // carol has the funds; the amount is exactly the review threshold.
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("carol", threshold))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let balance_store = cluster
        .clients()
        .internal_reservation(&t.transfer_id)
        .await
        .expect("the balance store saw the reserve");
    assert_refused(&balance_store, RefusalReason::Antifraud);

    let report = cluster.assert_invariants().await;
    assert_untouched(&report, "carol", 10_000_000);
    // Whatever the external institution held was released.
    match cluster.clients().external_reservation(&t.transfer_id).await {
        Ok(r) => assert_eq!(r.status(), ReservationStatus::Cancelled, "{r:?}"),
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
    }

    // Just below the threshold goes through.
    let (ok, _) = transfers
        .approve_ok(&TransferRequest::new("carol", threshold - 1))
        .await;
    assert_eq!(ok.status(), TransferStatus::Succeeded, "{ok:?}");
    cluster.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_transfer_in_the_window_is_rate_limited() {
    let mut config = ClusterConfig::default();
    config.rules.rate_limit_reserves_max = 2;
    config.rules.rate_limit_window_ms = 600_000;
    let mut cluster = Cluster::start(config).await;
    let transfers = cluster.transfers();
    for _ in 0..2 {
        let (t, _) = transfers
            .approve_ok(&TransferRequest::new("alice", 100))
            .await;
        assert_eq!(t.status(), TransferStatus::Succeeded, "{t:?}");
    }
    let (third, _) = transfers
        .approve_ok(&TransferRequest::new("alice", 100))
        .await;
    assert_eq!(third.status(), TransferStatus::Failed, "{third:?}");
    assert!(!third.failure_reason.is_empty(), "{third:?}");
    eprintln!("[e2e] rate limited: {:?}", third.failure_reason);
    // Another user has a window of their own.
    let (bob, _) = transfers
        .approve_ok(&TransferRequest::new("bob", 100))
        .await;
    assert_eq!(bob.status(), TransferStatus::Succeeded, "{bob:?}");

    let report = cluster.assert_invariants().await;
    let balance_store = cluster
        .clients()
        .internal_reservation(&third.transfer_id)
        .await
        .expect("reservation");
    assert_refused(&balance_store, RefusalReason::RateLimited);
    assert_eq!(report.accounts["ext-alice"].available_minor_units, 99_800);
    assert_eq!(report.accounts["int-alice"].available_minor_units, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_user_is_refused() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    assert!(
        cluster
            .config()
            .rules
            .blocked_users
            .contains(&"mallory".to_owned())
    );
    let transfers = cluster.transfers();
    let (t, _) = transfers
        .approve_ok(&TransferRequest::new("mallory", 1_000))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let report = cluster.assert_invariants().await;
    assert_untouched(&report, "mallory", 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_and_daily_limits_refuse_with_limit_exceeded() {
    let mut config = ClusterConfig::default();
    config.rules.transfer_minor_max = 1_000_000;
    config.rules.daily_inbound_limit_minor = 1_500_000;
    let mut cluster = Cluster::start(config).await;
    let transfers = cluster.transfers();

    let (too_big, _) = transfers
        .approve_ok(&TransferRequest::new("carol", 1_000_001))
        .await;
    assert_eq!(too_big.status(), TransferStatus::Failed, "{too_big:?}");

    let (first, _) = transfers
        .approve_ok(&TransferRequest::new("carol", 1_000_000))
        .await;
    assert_eq!(first.status(), TransferStatus::Succeeded, "{first:?}");
    let (over_daily, _) = transfers
        .approve_ok(&TransferRequest::new("carol", 600_000))
        .await;
    assert_eq!(
        over_daily.status(),
        TransferStatus::Failed,
        "{over_daily:?}"
    );

    let report = cluster.assert_invariants().await;
    for t in [&too_big, &over_daily] {
        let r = cluster
            .clients()
            .internal_reservation(&t.transfer_id)
            .await
            .expect("reservation");
        assert_refused(&r, RefusalReason::LimitExceeded);
    }
    assert_eq!(
        report.accounts["int-carol"].available_minor_units,
        1_000_000
    );
    assert_eq!(
        report.accounts["ext-carol"].available_minor_units,
        9_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_someone_elses_money_is_refused() {
    let mut cluster = Cluster::start(ClusterConfig::default()).await;
    let transfers = cluster.transfers();
    let (t, _) = transfers
        .approve_ok(&TransferRequest::between(
            "alice",
            "ext-bob",
            "int-alice",
            1_000,
        ))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let (t, _) = transfers
        .approve_ok(&TransferRequest::between(
            "alice",
            "ext-alice",
            "int-bob",
            1_000,
        ))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let (t, _) = transfers
        .approve_ok(&TransferRequest::between(
            "alice",
            "ext-nobody",
            "int-alice",
            1_000,
        ))
        .await;
    assert_eq!(t.status(), TransferStatus::Failed, "{t:?}");
    let report = cluster.assert_invariants().await;
    assert_untouched(&report, "alice", 100_000);
    assert_untouched(&report, "bob", 100_000);
}
