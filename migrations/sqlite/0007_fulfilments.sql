-- Manual fulfilment: for apps with no API, a person in IT grants or removes the access by hand and
-- confirms with a button; the ledger waits for that confirmation.
CREATE TABLE fulfilments (
    id            TEXT PRIMARY KEY,
    -- grant:<request id> or revoke:<grant id>: one task per change.
    task_key      TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,          -- grant | revoke
    request_id    TEXT NOT NULL,
    grant_id      TEXT,
    app           TEXT NOT NULL,
    entitlement   TEXT NOT NULL,
    target        TEXT NOT NULL,
    subject_email TEXT NOT NULL,
    channel       TEXT NOT NULL,
    -- For a revoke: who asked and why, carried to the revoke job once IT confirms.
    revoke_by     TEXT,
    revoke_reason TEXT,
    state         TEXT NOT NULL,          -- open | done | failed
    created_at    INTEGER NOT NULL,
    decided_by    TEXT,
    decided_at    INTEGER,
    message_channel TEXT,
    message_ts    TEXT
);
CREATE INDEX fulfilments_open ON fulfilments (state);
