-- The coordinator's transfer log, shared by the gateway (which writes the intent and
-- drives live requests) and the reconciler (which finishes what they left).
-- IF NOT EXISTS: the gateway and the reconciler may migrate the same file at once.
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id         TEXT    PRIMARY KEY,
    user_id             TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL,
    -- request_fingerprint(): a replay under the same key must carry the same one.
    fingerprint         TEXT    NOT NULL,
    external_account_id TEXT    NOT NULL,
    internal_account_id TEXT    NOT NULL,
    amount_minor        BIGINT  NOT NULL CHECK (amount_minor > 0),
    currency            TEXT    NOT NULL,
    state               TEXT    NOT NULL
        CHECK (state IN ('started', 'committed', 'aborted', 'succeeded', 'failed')),
    failure_reason      TEXT    NULL,
    created_at_ms       BIGINT  NOT NULL,
    decided_at_ms       BIGINT  NULL,
    updated_at_ms       BIGINT  NOT NULL,
    -- Reconciler bookkeeping: retries with backoff, and a lease per replica.
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT  NOT NULL,
    lease_owner         TEXT    NULL,
    lease_until_ms      BIGINT  NULL,
    UNIQUE (user_id, idempotency_key)
);

-- The reconciler's due-listing: unfinished states ordered by when they are due.
CREATE INDEX IF NOT EXISTS transfers_due ON transfers (state, next_attempt_at_ms);

-- The audit reads the most recent transfers.
CREATE INDEX IF NOT EXISTS transfers_created ON transfers (created_at_ms);
