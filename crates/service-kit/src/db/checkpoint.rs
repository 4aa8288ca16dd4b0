//! SQLite's WAL checkpoints, moved off the write path.
//!
//! Why: by default the connection that commits also checkpoints, inside that COMMIT,
//! once the WAL holds 1,000 pages: it copies them into the database file and (with
//! `synchronous = FULL`) flushes that file, several milliseconds during which every
//! caller of the group-commit batch waits, and every batch queued behind it. At 200
//! transfers/s a participant's WAL reached 1,000 pages about once a second and the
//! transfer log's every few seconds: the stalls in the tail of a transfer's latency.
//!
//! Here a task of the process checkpoints its database every [`INTERVAL`] on a
//! connection of its own, in PASSIVE mode: it copies what no reader still needs and
//! never waits for, nor blocks, the writer. The writer keeps a backstop
//! (`wal_autocheckpoint =` [`BACKSTOP_PAGES`]): should this task stall or fall behind,
//! the writer checkpoints at that size as before, so the WAL stays bounded either way.
//! Durability does not change: a commit is durable once its WAL frames are flushed,
//! whoever later copies them.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Connection};

/// How often the task checkpoints. At 1,000 transfers/s a store's WAL grows by a few
/// megabytes a second, so each checkpoint copies a few hundred pages.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own checkpoint threshold, in pages (40 MiB of 4 KiB pages): far above
/// what [`INTERVAL`] lets the WAL reach, so the writer checkpoints only if this task
/// does not.
pub const BACKSTOP_PAGES: u32 = 10_000;

/// Sets [`BACKSTOP_PAGES`] on the writer's connection (a test checks they agree).
pub const BACKSTOP_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 10000";

/// Runs one PASSIVE checkpoint on `conn`. What it reports (frames in the WAL, frames
/// copied) is not needed: the writer's backstop bounds the WAL whatever this achieves.
async fn checkpoint(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Starts the task for the database at `url` (a SQLite file URL), until `pool` closes.
/// A failure to open its connection or to checkpoint is logged and retried at the next
/// tick; meanwhile the writer's backstop keeps the WAL bounded.
pub fn spawn(url: String, pool: AnyPool) {
    tokio::spawn(async move {
        let mut conn: Option<AnyConnection> = None;
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            if conn.is_none() {
                match AnyConnection::connect(&url).await {
                    Ok(opened) => conn = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot open the WAL checkpoint connection");
                        continue;
                    }
                }
            }
            if let Some(open) = conn.as_mut()
                && let Err(err) = checkpoint(open).await
            {
                tracing::warn!(error = %err, "WAL checkpoint failed");
                conn = None;
            }
        }
        if let Some(open) = conn {
            let _ = open.close().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, PoolSettings};

    async fn open(dir: &tempfile::TempDir) -> (db::Db, std::path::PathBuf) {
        let path = dir.path().join("store.db");
        let url = format!("sqlite://{}", path.display());
        let db = db::connect(&url, PoolSettings::default()).await.unwrap();
        sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&db.pool)
            .await
            .unwrap();
        (db, path)
    }

    #[tokio::test]
    async fn the_writer_leaves_checkpoints_to_the_task_and_keeps_a_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(&dir).await;
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(pages, i64::from(BACKSTOP_PAGES));
        db.pool.close().await;
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, path) = open(&dir).await;
        // About 500 pages of WAL, one commit each 20 rows: below SQLite's default
        // threshold of 1,000, so only the task can have copied them.
        let body = "x".repeat(4000);
        for batch in 0..25 {
            let mut tx = db.pool.begin().await.unwrap();
            for row in 0..20 {
                sqlx::query("INSERT INTO rows (id, body) VALUES ($1, $2)")
                    .bind(batch * 20 + row)
                    .bind(&body)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let file_len = || std::fs::metadata(&path).map_or(0, |m| m.len());
        let deadline = tokio::time::Instant::now() + 10 * INTERVAL;
        while file_len() < 400 * 4000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(INTERVAL / 4).await;
        }
        assert!(
            file_len() >= 400 * 4000,
            "the database file holds {} bytes: nothing checkpointed it",
            file_len()
        );
        db.pool.close().await;
    }
}
