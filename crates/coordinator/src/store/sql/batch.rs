//! A batch of the transfer log's writes with one statement per kind: the intents are one
//! multi-row insert, the decisions one compare-and-set update, the outcomes another, each
//! returning the rows it wrote. The rows travel as one JSON array parameter, so each
//! statement has one fixed text (prepared once per connection) whatever the batch's size.
//!
//! The outcome must be exactly that of running the writes one after another
//! (`LogWrite::write_in`, which is also what every write falls back to when its batch
//! fails). Writes to different transfers (and intents for different idempotency keys)
//! do not read each other's rows, so a segment holds each transfer and each key at most
//! once; a repeat starts the next segment, which sees the earlier ones' writes. A write
//! whose guard did not match (a taken key, a transfer decided or finished already) reads
//! the row it found, as alone, and each decision is still its own compare-and-set.

use std::collections::{HashMap, HashSet};

use service_kit::db::Backend;
use sqlx::AnyConnection;

use super::{
    Intent, LogWrite, Op, StoreError, TransferRecord, Written, decided, finished, ms_to_db,
    record_from_row, state_before, store_error,
};

struct LogBatchSql {
    insert_intents: &'static str,
    record_decisions: &'static str,
    record_outcomes: &'static str,
}

// The JSON rows' columns have names of their own (`new_state`, `at_ms`...), so that
// RETURNING's unqualified columns can only mean the transfer's.
const POSTGRES: LogBatchSql = LogBatchSql {
    insert_intents: concat!(
        "INSERT INTO transfers (",
        columns!(),
        ") SELECT i.id, i.user_id, i.idempotency_key, i.fingerprint, i.external_account_id, \
         i.internal_account_id, i.amount_minor, i.currency, 'started', NULL, i.at_ms, NULL, \
         i.at_ms, 0, i.next_attempt_at_ms, NULL, NULL, i.trace_context \
         FROM json_to_recordset(CAST($1 AS JSON)) AS i(id TEXT, user_id TEXT, \
         idempotency_key TEXT, fingerprint TEXT, external_account_id TEXT, \
         internal_account_id TEXT, amount_minor BIGINT, currency TEXT, at_ms BIGINT, \
         next_attempt_at_ms BIGINT, trace_context TEXT) \
         ON CONFLICT DO NOTHING RETURNING ",
        columns!()
    ),
    // The primary key finds each row (`= ANY(ARRAY(...))`): joined with the JSON rows
    // instead, the planner may prefer scanning the table.
    record_decisions: concat!(
        "UPDATE transfers SET state = d.new_state, failure_reason = d.reason, \
         decided_at_ms = d.at_ms, updated_at_ms = d.at_ms \
         FROM json_to_recordset(CAST($1 AS JSON)) AS d(id TEXT, new_state TEXT, reason TEXT, \
         at_ms BIGINT) \
         WHERE transfer_id = d.id AND state = 'started' AND transfer_id = ANY(ARRAY( \
         SELECT x ->> 'id' FROM json_array_elements(CAST($1 AS JSON)) AS x)) RETURNING ",
        columns!()
    ),
    record_outcomes: concat!(
        "UPDATE transfers SET state = o.new_state, updated_at_ms = o.at_ms \
         FROM json_to_recordset(CAST($1 AS JSON)) AS o(id TEXT, new_state TEXT, \
         old_state TEXT, at_ms BIGINT) \
         WHERE transfer_id = o.id AND state = o.old_state AND transfer_id = ANY(ARRAY( \
         SELECT x ->> 'id' FROM json_array_elements(CAST($1 AS JSON)) AS x)) RETURNING ",
        columns!()
    ),
};

// SQLite needs the WHERE in INSERT ... SELECT ... ON CONFLICT to tell the upsert from a
// join's ON.
const SQLITE: LogBatchSql = LogBatchSql {
    insert_intents: concat!(
        "INSERT INTO transfers (",
        columns!(),
        ") SELECT value ->> '$.id', value ->> '$.user_id', value ->> '$.idempotency_key', \
         value ->> '$.fingerprint', value ->> '$.external_account_id', \
         value ->> '$.internal_account_id', value ->> '$.amount_minor', \
         value ->> '$.currency', 'started', NULL, value ->> '$.at_ms', NULL, \
         value ->> '$.at_ms', 0, value ->> '$.next_attempt_at_ms', NULL, NULL, \
         value ->> '$.trace_context' FROM json_each($1) WHERE true \
         ON CONFLICT DO NOTHING RETURNING ",
        columns!()
    ),
    record_decisions: concat!(
        "UPDATE transfers SET state = d.new_state, failure_reason = d.reason, \
         decided_at_ms = d.at_ms, updated_at_ms = d.at_ms \
         FROM (SELECT value ->> '$.id' AS id, value ->> '$.new_state' AS new_state, \
         value ->> '$.reason' AS reason, value ->> '$.at_ms' AS at_ms FROM json_each($1)) AS d \
         WHERE transfer_id = d.id AND state = 'started' RETURNING ",
        columns!()
    ),
    record_outcomes: concat!(
        "UPDATE transfers SET state = o.new_state, updated_at_ms = o.at_ms \
         FROM (SELECT value ->> '$.id' AS id, value ->> '$.new_state' AS new_state, \
         value ->> '$.old_state' AS old_state, value ->> '$.at_ms' AS at_ms \
         FROM json_each($1)) AS o \
         WHERE transfer_id = o.id AND state = o.old_state RETURNING ",
        columns!()
    ),
};

impl LogBatchSql {
    fn of(backend: Backend) -> &'static LogBatchSql {
        match backend {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        }
    }
}

impl Op {
    fn transfer_id(&self) -> &str {
        match self {
            Op::Intent(new) => &new.transfer_id,
            Op::Decision { transfer_id, .. } | Op::Outcome { transfer_id, .. } => transfer_id,
        }
    }
}

/// Writes `jobs` in order inside the caller's transaction, with the outcomes (and the
/// rows) that `LogWrite::write_in` one after another would give.
pub(super) async fn write_many(
    conn: &mut AnyConnection,
    jobs: &[&LogWrite],
) -> Result<Vec<Written>, StoreError> {
    let Some(first) = jobs.first() else {
        return Ok(Vec::new());
    };
    let backend = first.backend;
    let mut written = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while !rest.is_empty() {
        let len = segment_len(rest);
        let (segment, after) = rest.split_at(len);
        written.extend(write_segment(conn, backend, segment).await?);
        rest = after;
    }
    Ok(written)
}

/// How many writes from the start of `jobs` touch distinct transfers and, for intents,
/// distinct idempotency keys. Always at least one.
fn segment_len(jobs: &[&LogWrite]) -> usize {
    let mut transfers: HashSet<&str> = HashSet::new();
    let mut keys: HashSet<(&str, &str)> = HashSet::new();
    for (index, job) in jobs.iter().enumerate() {
        let new_transfer = transfers.insert(job.op.transfer_id());
        let new_key = match &job.op {
            Op::Intent(new) => keys.insert((&new.user_id, &new.idempotency_key)),
            Op::Decision { .. } | Op::Outcome { .. } => true,
        };
        if !(new_transfer && new_key) {
            // Never the first: nothing came before it.
            return index;
        }
    }
    jobs.len()
}

async fn write_segment(
    conn: &mut AnyConnection,
    backend: Backend,
    jobs: &[&LogWrite],
) -> Result<Vec<Written>, StoreError> {
    let sql = LogBatchSql::of(backend);
    let mut intents = Vec::new();
    let mut decisions = Vec::new();
    let mut outcomes = Vec::new();
    for job in jobs {
        match &job.op {
            Op::Intent(new) => intents.push(serde_json::json!({
                "id": new.transfer_id,
                "user_id": new.user_id,
                "idempotency_key": new.idempotency_key,
                "fingerprint": new.fingerprint,
                "external_account_id": new.external_account_id,
                "internal_account_id": new.internal_account_id,
                "amount_minor": new.amount.minor_units(),
                "currency": new.amount.currency().as_str(),
                "at_ms": ms_to_db(new.created_at_ms),
                "next_attempt_at_ms": ms_to_db(new.next_attempt_at_ms),
                "trace_context": new.trace_context,
            })),
            Op::Decision {
                transfer_id,
                decision,
                failure_reason,
                now_ms,
            } => decisions.push(serde_json::json!({
                "id": transfer_id,
                "new_state": decision.recorded_state().as_str(),
                "reason": failure_reason,
                "at_ms": ms_to_db(*now_ms),
            })),
            Op::Outcome {
                transfer_id,
                outcome,
                now_ms,
            } => outcomes.push(serde_json::json!({
                "id": transfer_id,
                "new_state": outcome.as_str(),
                "old_state": state_before(*outcome).as_str(),
                "at_ms": ms_to_db(*now_ms),
            })),
        }
    }
    let mut wrote: HashMap<String, TransferRecord> = HashMap::new();
    write_rows(conn, backend, sql.insert_intents, intents, &mut wrote).await?;
    // An intent whose key is taken answers with the key's transfer as it was at the
    // intent's turn: read before this segment's decisions and outcomes, and replaced
    // below by what an earlier write of the segment made of it.
    let mut taken: HashMap<usize, Written> = HashMap::new();
    for (index, job) in jobs.iter().enumerate() {
        if let Op::Intent(new) = &job.op
            && !wrote.contains_key(&new.transfer_id)
        {
            taken.insert(index, job.taken_key(conn, new).await?);
        }
    }
    write_rows(conn, backend, sql.record_decisions, decisions, &mut wrote).await?;
    write_rows(conn, backend, sql.record_outcomes, outcomes, &mut wrote).await?;

    let mut written: Vec<Written> = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        let mine = wrote.get(job.op.transfer_id()).cloned();
        written.push(match &job.op {
            Op::Intent(_) => match mine {
                Some(record) => Written::Intent(Intent::Created(record)),
                None => {
                    let Written::Intent(Intent::Existing(owner)) = taken
                        .remove(&index)
                        .expect("every intent that inserted nothing was looked up")
                    else {
                        unreachable!("a taken key answers with the transfer holding it");
                    };
                    let earlier = jobs[..index]
                        .iter()
                        .any(|job| job.op.transfer_id() == owner.transfer_id);
                    match wrote.get(&owner.transfer_id) {
                        Some(rewritten) if earlier => {
                            Written::Intent(Intent::Existing(rewritten.clone()))
                        }
                        _ => Written::Intent(Intent::Existing(owner)),
                    }
                }
            },
            // No row: the guard did not match. Only this write touches the transfer in
            // this segment, so it reads what was there before, as alone.
            Op::Decision { transfer_id, .. } => match mine {
                Some(record) => decided(record)?,
                None => decided(job.existing(conn, transfer_id).await?)?,
            },
            Op::Outcome {
                transfer_id,
                outcome,
                ..
            } => match mine {
                Some(record) => finished(record, *outcome)?,
                None => finished(job.existing(conn, transfer_id).await?, *outcome)?,
            },
        });
    }
    Ok(written)
}

/// Runs one of the batched statements over `rows` and keeps the rows it wrote (returned),
/// by transfer id.
async fn write_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    statement: &'static str,
    rows: Vec<serde_json::Value>,
    wrote: &mut HashMap<String, TransferRecord>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let returned = sqlx::query(statement)
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| store_error(backend, e))?;
    for row in &returned {
        let record = record_from_row(row)?;
        let transfer_id = record.transfer_id.clone();
        assert!(
            wrote.insert(transfer_id, record).is_none(),
            "a segment writes each transfer at most once"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
