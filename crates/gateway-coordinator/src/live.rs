//! The drives running in this process, by user and idempotency key: a replay of a
//! transfer that is being driven right here waits for that drive to end (an in-process
//! notification) instead of polling the transfer log every few milliseconds, so a client
//! retrying the same key in a tight loop costs no database work while its transfer runs.
//!
//! Bounded: at most `entries_max` drives are tracked (the gateway passes its concurrency
//! limit's maximum, which no number of live drives exceeds); beyond it a drive simply is
//! not tracked and its replays fall back to polling the log.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use coordinator::store::TransferRecord;
use tokio::sync::watch;

type Key = (String, String);

struct Entry {
    transfer_id: String,
    fingerprint: String,
    /// The record as the drive started (answered if a replay's budget runs out first).
    started: TransferRecord,
    /// Some(record) once the drive has ended.
    ended: watch::Receiver<Option<TransferRecord>>,
}

pub struct LiveDrives {
    entries: Mutex<HashMap<Key, Entry>>,
    entries_max: usize,
}

/// A live drive as a replay sees it.
pub struct Watch {
    pub fingerprint: String,
    pub started: TransferRecord,
    pub ended: watch::Receiver<Option<TransferRecord>>,
}

impl LiveDrives {
    pub fn new(entries_max: usize) -> LiveDrives {
        assert!(entries_max > 0);
        LiveDrives {
            entries: Mutex::new(HashMap::new()),
            entries_max,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tracks the drive of `record` (just created) until the returned guard is dropped;
    /// None when the map is full (the drive runs untracked).
    pub fn register(&self, record: &TransferRecord) -> Option<LiveGuard<'_>> {
        let key = (record.user_id.clone(), record.idempotency_key.clone());
        let mut entries = self.entries();
        if entries.len() >= self.entries_max || entries.contains_key(&key) {
            return None;
        }
        let (sender, ended) = watch::channel(None);
        entries.insert(
            key.clone(),
            Entry {
                transfer_id: record.transfer_id.clone(),
                fingerprint: record.fingerprint.clone(),
                started: record.clone(),
                ended,
            },
        );
        assert!(entries.len() <= self.entries_max);
        Some(LiveGuard {
            drives: self,
            key,
            transfer_id: record.transfer_id.clone(),
            sender,
        })
    }

    /// The drive of `user_id`'s `idempotency_key`, if it runs in this process now.
    pub fn find(&self, user_id: &str, idempotency_key: &str) -> Option<Watch> {
        let entries = self.entries();
        let entry = entries.get(&(user_id.to_owned(), idempotency_key.to_owned()))?;
        Some(Watch {
            fingerprint: entry.fingerprint.clone(),
            started: entry.started.clone(),
            ended: entry.ended.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Held by the drive; dropping it (after [`LiveGuard::finish`], or when the drive is
/// abandoned because its caller went away) stops tracking it. Waiters of an abandoned
/// drive see the channel close and fall back to the transfer log.
pub struct LiveGuard<'a> {
    drives: &'a LiveDrives,
    key: Key,
    transfer_id: String,
    sender: watch::Sender<Option<TransferRecord>>,
}

impl LiveGuard<'_> {
    /// The drive ended with `record`: wakes every replay waiting for it.
    pub fn finish(self, record: &TransferRecord) {
        self.sender.send_replace(Some(record.clone()));
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        let mut entries = self.drives.entries();
        if entries
            .get(&self.key)
            .is_some_and(|e| e.transfer_id == self.transfer_id)
        {
            entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banktransfer_protocol::money::Money;
    use banktransfer_protocol::transfer::RecordedState;

    fn record(user: &str, key: &str, id: &str) -> TransferRecord {
        TransferRecord {
            transfer_id: id.into(),
            user_id: user.into(),
            idempotency_key: key.into(),
            fingerprint: format!("fp-{key}"),
            external_account_id: "ext-1".into(),
            internal_account_id: "int-1".into(),
            amount: Money::positive(100, "USD").unwrap(),
            state: RecordedState::Started,
            failure_reason: None,
            created_at_ms: 0,
            decided_at_ms: None,
            updated_at_ms: 0,
            attempts: 0,
            next_attempt_at_ms: 0,
            lease_owner: None,
            lease_until_ms: None,
            trace_context: None,
        }
    }

    #[tokio::test]
    async fn a_waiter_learns_the_end_of_the_drive() {
        let drives = LiveDrives::new(4);
        let started = record("alice", "k1", "t-1");
        let guard = drives.register(&started).unwrap();
        let mut watch = drives.find("alice", "k1").unwrap();
        assert_eq!(watch.fingerprint, "fp-k1");
        assert!(drives.find("alice", "k2").is_none());
        assert!(drives.find("bob", "k1").is_none());
        let ended = RecordedState::Succeeded;
        let mut done = started.clone();
        done.state = ended;
        guard.finish(&done);
        let seen = watch.ended.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(seen.unwrap().state, RecordedState::Succeeded);
        assert!(drives.is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_drive_closes_its_channel() {
        let drives = LiveDrives::new(4);
        let guard = drives.register(&record("alice", "k1", "t-1")).unwrap();
        let mut watch = drives.find("alice", "k1").unwrap();
        drop(guard);
        assert!(watch.ended.wait_for(Option::is_some).await.is_err());
        assert!(drives.is_empty());
    }

    #[test]
    fn the_map_is_bounded() {
        let drives = LiveDrives::new(2);
        let a = drives.register(&record("alice", "k1", "t-1")).unwrap();
        let _b = drives.register(&record("alice", "k2", "t-2")).unwrap();
        assert!(drives.register(&record("bob", "k1", "t-3")).is_none());
        assert_eq!(drives.len(), 2);
        drop(a);
        assert!(drives.register(&record("bob", "k1", "t-3")).is_some());
    }
}
