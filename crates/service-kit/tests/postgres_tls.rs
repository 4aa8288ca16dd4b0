//! PostgreSQL over TLS: `database_url` carries libpq's `sslmode` and `sslrootcert`, and the
//! storage shell honours them (sqlx with rustls). Two facts are checked against the real
//! server: `sslmode=require` really encrypts (the server's own view, `pg_stat_ssl`), and
//! `sslmode=verify-full` with a CA that did not sign the server's certificate refuses to
//! connect, never falling back to plaintext.
//!
//! Skips loudly when the server has TLS switched off (`SHOW ssl`): that is the server's
//! configuration, not something a test should change on a shared machine.

use service_kit::db::{self, PoolSettings};

/// The test database URL with `params` appended.
fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

#[tokio::test]
async fn postgres_connections_can_require_and_verify_tls() {
    let Some(test_db) = testkit::db::postgres("pgtls").await else {
        return;
    };
    let plain = db::connect(&test_db.url, PoolSettings::default())
        .await
        .expect("connect");
    let (ssl,): (String,) = sqlx::query_as("SELECT current_setting('ssl')")
        .fetch_one(&plain.pool)
        .await
        .unwrap();
    plain.pool.close().await;
    if ssl != "on" {
        eprintln!(
            "\n!!!!!!!!!! SKIPPING postgres_connections_can_require_and_verify_tls: the server \
             at the test URL has ssl = {ssl} !!!!!!!!!!\n"
        );
        return;
    }

    let encrypted = db::connect(
        &with_params(&test_db.url, "sslmode=require"),
        PoolSettings::default(),
    )
    .await
    .expect("sslmode=require connects to a TLS-enabled server");
    let (over_tls,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&encrypted.pool)
            .await
            .unwrap();
    assert!(over_tls, "sslmode=require must give an encrypted session");
    encrypted.pool.close().await;

    // A CA that signed nothing the server presents: verification must fail the connect.
    let pki = testkit::pki::TestPki::new();
    let ca = pki.files().ca_cert();
    let url = with_params(
        &test_db.url,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let refused = db::connect(
        &url,
        PoolSettings {
            acquire_timeout: std::time::Duration::from_secs(5),
            ..PoolSettings::default()
        },
    )
    .await;
    assert!(
        refused.is_err(),
        "verify-full against a certificate our CA did not sign must not connect"
    );
}
