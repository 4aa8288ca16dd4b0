-- The reservation book (SQLite): one row per account, one row per transfer id ever seen.
-- Money is BIGINT minor units; times are epoch milliseconds. The CHECKs are the last line
-- of defence behind the protocol crate's assertions: a bug cannot store a negative balance.

CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    currency        TEXT NOT NULL,
    available_minor BIGINT NOT NULL CHECK (available_minor >= 0),
    reserved_minor  BIGINT NOT NULL CHECK (reserved_minor >= 0),
    confirmed_minor BIGINT NOT NULL CHECK (confirmed_minor >= 0),
    opened_at_ms    BIGINT NOT NULL
);

CREATE TABLE reservations (
    transfer_id     TEXT PRIMARY KEY,
    -- NULL terms mark a tombstone: a cancel that arrived before any reserve.
    account_id      TEXT NULL,
    user_id         TEXT NULL,
    amount_minor    BIGINT NULL CHECK (amount_minor > 0),
    currency        TEXT NULL,
    status          TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'cancelled', 'refused')),
    refusal_reason  TEXT NULL,
    refusal_message TEXT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    -- Terms are all there or all absent, and only a cancel leaves a row without terms.
    CHECK (
        (account_id IS NULL AND user_id IS NULL AND amount_minor IS NULL AND currency IS NULL
            AND status = 'cancelled')
        OR (account_id IS NOT NULL AND user_id IS NOT NULL AND amount_minor IS NOT NULL
            AND currency IS NOT NULL)
    ),
    -- A refusal always says why; nothing else carries a reason.
    CHECK ((status = 'refused') = (refusal_reason IS NOT NULL))
);

-- The balance store's rate limit: reservations by one user in a trailing window.
CREATE INDEX reservations_by_user ON reservations (user_id, created_at_ms);
-- The balance store's daily limit: credits to one account in the trailing 24 hours.
CREATE INDEX reservations_by_account ON reservations (account_id, created_at_ms);
