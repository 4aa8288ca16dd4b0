//! The TEST-ONLY pause points the crash tests rely on: the driver stops exactly there,
//! says so in the log, and a transfer killed there is finished from its record alone.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banktransfer_protocol::transfer::{Leg, RecordedState};
use common::{intent, now_ms, open_store};
use coordinator::driver::{Deadlines, Driver};
use coordinator::participants::ReservationView;
use coordinator::pause::PausePoints;
use coordinator::store::{Intent, TransferStore};
use service_kit::clock::SystemClock;
use testkit::participants::{FakeParticipants, Op};

/// Log lines written while the guard lives (this test's thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn deadlines() -> Deadlines {
    Deadlines::recovery(now_ms(), 5_000)
}

// Current-thread runtime (the default): every task runs on this thread, under the
// captured subscriber.
#[tokio::test]
async fn paused_after_the_decision_nothing_is_confirmed_and_recovery_finishes_it() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let test_db = testkit::db::sqlite("afterdecision");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let Intent::Created(record) = store
        .insert_intent(&intent("alice", "k1", 100, now_ms()))
        .await
        .unwrap()
    else {
        panic!("fresh intent");
    };
    let id = record.transfer_id.clone();
    let paused = Driver::new(
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        PausePoints::parse("after_decision", 60_000).unwrap(),
    );
    let task = tokio::spawn(async move { paused.begin(record, deadlines()).await });
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    let committed = loop {
        let now = store.get(&id).await.unwrap().unwrap();
        if now.state != RecordedState::Started {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never decided: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(committed.state, RecordedState::Committed);
    // Wait for the log line the crash tests wait for, then "kill" the driver.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while !captured
        .text()
        .contains("pause point reached: after_decision")
    {
        assert!(tokio::time::Instant::now() < give_up, "{}", captured.text());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(fake.count_op(Op::Confirm) + fake.count_op(Op::Cancel), 0);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let recovery = Driver::new(
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        PausePoints::off(),
    );
    let driven = recovery.resume(committed, None, deadlines()).await;
    assert_eq!(driven.record.state, RecordedState::Succeeded);
    for leg in Leg::BOTH {
        assert_eq!(fake.reservation(leg, &id), ReservationView::Confirmed);
    }
}

#[tokio::test]
async fn paused_after_both_reserves_the_transfer_stays_undecided() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let test_db = testkit::db::sqlite("afterreserve");
    let store = open_store(&test_db).await;
    let fake = Arc::new(FakeParticipants::new());
    let Intent::Created(record) = store
        .insert_intent(&intent("alice", "k1", 100, now_ms()))
        .await
        .unwrap()
    else {
        panic!("fresh intent");
    };
    let id = record.transfer_id.clone();
    let paused = Driver::new(
        store.clone(),
        fake.clone(),
        Arc::new(SystemClock),
        PausePoints::parse("after_reserve", 60_000).unwrap(),
    );
    let task = tokio::spawn(async move { paused.begin(record, deadlines()).await });
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while !captured
        .text()
        .contains("pause point reached: after_reserve")
    {
        assert!(tokio::time::Instant::now() < give_up, "{}", captured.text());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for leg in Leg::BOTH {
        assert_eq!(fake.reservation(leg, &id), ReservationView::Held);
    }
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().state,
        RecordedState::Started,
        "paused before the decision"
    );
    task.abort();
    let _ = task.await;
}
