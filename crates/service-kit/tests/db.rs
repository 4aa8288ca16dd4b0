//! The storage shell on both back ends: migrations apply (twice, idempotently), 64-bit
//! money round-trips, unique violations are recognised, CHECK constraints bite.

use service_kit::db::{self, Migrations, PoolSettings};

const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(
        "accounts",
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0))",
    )],
    postgres: &[(
        "accounts",
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0))",
    )],
};

#[tokio::test]
async fn migrations_money_and_constraints_on_every_backend() {
    for test_db in testkit::db::all("kitdb").await {
        let db = db::connect(&test_db.url, PoolSettings::default())
            .await
            .unwrap();
        db::migrate(&db, &MIGRATIONS).await.unwrap();
        db::migrate(&db, &MIGRATIONS).await.unwrap();

        sqlx::query("INSERT INTO accounts (id, balance_minor) VALUES ($1, $2)")
            .bind("a")
            .bind(i64::MAX)
            .execute(&db.pool)
            .await
            .unwrap();
        let (balance,): (i64,) = sqlx::query_as("SELECT balance_minor FROM accounts WHERE id = $1")
            .bind("a")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(balance, i64::MAX, "{:?}", db.backend);

        let dup = sqlx::query("INSERT INTO accounts (id, balance_minor) VALUES ($1, $2)")
            .bind("a")
            .bind(1_i64)
            .execute(&db.pool)
            .await
            .unwrap_err();
        assert!(db::is_unique_violation(&dup), "{:?}: {dup}", db.backend);

        let negative = sqlx::query("INSERT INTO accounts (id, balance_minor) VALUES ($1, $2)")
            .bind("b")
            .bind(-1_i64)
            .execute(&db.pool)
            .await
            .unwrap_err();
        assert!(!db::is_unique_violation(&negative));
        db.pool.close().await;
    }
}
