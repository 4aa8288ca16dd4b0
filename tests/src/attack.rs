//! What the attack tests (`tests/security.rs`) check after every refused call: that the
//! answer is the expected status and reveals nothing of the database behind it, and that
//! nothing changed ([`Books`]: every account's balances and the number of transfers in
//! the coordinator's log, as the reconciler's Audit counts them).

use banktransfer_api::reconciler::v1::AuditRequest;
use tonic::{Code, Status};

use crate::accounts::Side;
use crate::clients::request;
use crate::cluster::Cluster;
use crate::service::Service;

/// Words that only a database error would put in a message (matched case-insensitively):
/// a client must never see how or where the services store their data.
pub const DATABASE_WORDS: [&str; 7] = [
    "sqlx",
    "sqlite",
    "postgres",
    "sql",
    "database",
    "constraint",
    "invalid byte sequence",
];

/// The log line the gateway writes for every intent it records (`coordinator::driver`,
/// inside the transfer's span): a refused request must never produce it.
pub const INTENT_RECORDED_LOG: &str = "reserving on both legs";
/// The line the gateway writes when a request repeats a recorded intent.
pub const INTENT_REPLAYED_LOG: &str = "replay of an existing transfer";
/// The line a participant writes for every reserve it records or replays.
pub const RESERVE_LOGS: [&str; 2] = ["reserve recorded", "reserve replayed"];

/// Ids no boundary may accept (`banktransfer_protocol::ids`), each with what is wrong
/// with it. The forged log line checks that an id never starts a line of its own in a log.
pub fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("a NUL byte", "alice\0".to_owned()),
        ("129 bytes", "a".repeat(129)),
        ("a newline", "alice\n".to_owned()),
        ("a terminal escape", "\x1b[31m".to_owned()),
        (
            "a forged log line",
            format!("alice\n{FORGED_LOG_LINE} transfer approved"),
        ),
        ("a space", "alice bob".to_owned()),
        ("a non-ASCII letter", "\u{e4}lice".to_owned()),
    ]
}

/// The start of the line [`bad_ids`] tries to smuggle into a log.
pub const FORGED_LOG_LINE: &str = "FORGED-LOG-LINE";

/// Panics unless `status` has `code` and its message contains no [`DATABASE_WORDS`].
pub fn assert_status(what: &str, status: &Status, code: Code) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_no_database_text(what, status);
}

/// Panics unless `answer` is an error with `code` whose message contains no
/// [`DATABASE_WORDS`].
pub fn assert_refused<T: std::fmt::Debug>(what: &str, answer: Result<T, Status>, code: Code) {
    match answer {
        Ok(value) => panic!("{what}: expected {code:?}, got an answer: {value:?}"),
        Err(status) => assert_status(what, &status, code),
    }
}

/// Panics when the message of `status` contains any of [`DATABASE_WORDS`].
pub fn assert_no_database_text(what: &str, status: &Status) {
    let found = database_words_in(status.message());
    assert!(
        found.is_empty(),
        "{what}: the message reveals the database ({found:?}): {status:?}"
    );
}

/// The [`DATABASE_WORDS`] in `message`, in any case.
pub fn database_words_in(message: &str) -> Vec<&'static str> {
    let message = message.to_lowercase();
    DATABASE_WORDS
        .into_iter()
        .filter(|word| message.contains(word))
        .collect()
}

/// What a refused call must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct Books {
    /// (account id, available, reserved, confirmed) of every account the cluster opened.
    pub accounts: Vec<(String, i64, i64, i64)>,
    /// Transfers in the coordinator's log (the reconciler's Audit checks every one).
    pub transfers_logged: u32,
}

impl Books {
    /// Reads every account (as the operator) and the Audit (as the operator).
    pub async fn read(cluster: &Cluster) -> Books {
        let clients = cluster.clients();
        let mut accounts = Vec::new();
        for spec in &cluster.config().accounts {
            let account = match spec.side {
                Side::External => clients.external_account(&spec.account_id).await,
                Side::BalanceStore => clients.internal_account(&spec.account_id).await,
            }
            .unwrap_or_else(|status| panic!("GetAccount {}: {status:?}", spec.account_id));
            accounts.push((
                account.account_id,
                account.available_minor_units,
                account.reserved_minor_units,
                account.confirmed_minor_units,
            ));
        }
        let audit = clients
            .reconciler
            .clone()
            .audit(request(AuditRequest { limit: 0 }))
            .await
            .unwrap_or_else(|status| panic!("Audit: {status:?}"))
            .into_inner();
        Books {
            accounts,
            transfers_logged: audit.transfers_checked,
        }
    }

    /// Panics unless the books read now equal `self`.
    pub async fn assert_unchanged(&self, cluster: &Cluster, after: &str) {
        let now = Books::read(cluster).await;
        assert_eq!(&now, self, "the books changed after {after}");
    }
}

/// Byte offsets into every service's log: what was written before an attack.
#[derive(Debug)]
pub struct LogMarks(Vec<(Service, u64)>);

impl LogMarks {
    pub fn take(cluster: &Cluster) -> LogMarks {
        LogMarks(
            Service::ALL
                .iter()
                .map(|&service| (service, cluster.log_len(service)))
                .collect(),
        )
    }

    /// What `service` logged since the marks were taken, colours stripped.
    pub fn since(&self, cluster: &Cluster, service: Service) -> String {
        let offset = self.offset(service);
        cluster.log_since(service, offset)
    }

    /// The raw bytes `service` logged since the marks were taken.
    pub fn raw_since(&self, cluster: &Cluster, service: Service) -> Vec<u8> {
        let bytes = std::fs::read(cluster.log_path(service)).unwrap_or_default();
        let offset = usize::try_from(self.offset(service)).expect("a log offset fits in usize");
        bytes.get(offset..).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn offset(&self, service: Service) -> u64 {
        self.0
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(0, |(_, offset)| *offset)
    }

    /// Panics when the gateway recorded or replayed an intent, or a participant recorded a
    /// reserve, since the marks were taken.
    pub fn assert_nothing_recorded(&self, cluster: &Cluster, after: &str) {
        let gateway = self.since(cluster, Service::Gateway);
        for line in [INTENT_RECORDED_LOG, INTENT_REPLAYED_LOG] {
            assert!(
                !gateway.contains(line),
                "after {after}, the gateway logged {line:?}:\n{gateway}"
            );
        }
        for participant in [Service::External, Service::BalanceStore] {
            let log = self.since(cluster, participant);
            for line in RESERVE_LOGS {
                assert!(
                    !log.contains(line),
                    "after {after}, the {participant} logged {line:?}:\n{log}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_text_is_caught_in_any_case() {
        assert_eq!(
            database_words_in("error returned from database: SQLITE_CONSTRAINT"),
            ["sqlite", "sql", "database", "constraint"]
        );
        assert_no_database_text(
            "clean",
            &Status::invalid_argument("user_id: is required; set a non-empty id"),
        );
    }

    #[test]
    fn every_bad_id_breaks_the_id_rule() {
        for (what, id) in bad_ids() {
            assert!(
                banktransfer_protocol::ids::check_id("user_id", &id).is_err(),
                "{what}"
            );
        }
    }
}
