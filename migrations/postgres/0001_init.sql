-- grantry schema, PostgreSQL (the same shape as migrations/sqlite/). Times are integer milliseconds since the Unix epoch (UTC);
-- JSON is stored as TEXT. PostgreSQL follows the same shape in migrations/postgres/.

CREATE TABLE requests (
    id                TEXT PRIMARY KEY,
    idempotency_key   TEXT UNIQUE,
    platform          TEXT NOT NULL,
    requester_chat_id TEXT NOT NULL,
    requester_email   TEXT NOT NULL,
    subject_email     TEXT NOT NULL,
    app               TEXT NOT NULL,
    entitlement       TEXT NOT NULL,
    duration_minutes  BIGINT,            -- NULL: permanent
    reason            TEXT NOT NULL,
    ticket            TEXT,
    state             TEXT NOT NULL,
    reply_channel     TEXT,               -- where the requester asked, for ephemeral replies
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX requests_requester ON requests (requester_email, state);
CREATE INDEX requests_state ON requests (state, updated_at);

-- Every decision on a request: policy's, then each approver's.
CREATE TABLE decisions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    kind        TEXT NOT NULL,            -- policy | approver
    outcome     TEXT NOT NULL,            -- deny | auto_approve | needs_approval | approved | rejected
    actor       TEXT NOT NULL,            -- 'policy' or the approver's email
    policy_ids  TEXT NOT NULL DEFAULT '[]',
    reasons     TEXT NOT NULL DEFAULT '[]',
    at          BIGINT NOT NULL
);
CREATE INDEX decisions_request ON decisions (request_id);

-- Who may decide a request, and where their card is.
CREATE TABLE approvals (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    step            BIGINT NOT NULL DEFAULT 0,
    approver_email  TEXT NOT NULL,
    approver_name   TEXT NOT NULL,
    platform        TEXT NOT NULL,
    chat_user_id    TEXT,                 -- filled from the directory, or looked up when the card is sent
    channel_id      TEXT,
    message_ts      TEXT,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | approved | rejected | closed
    decided_at      BIGINT,
    UNIQUE (request_id, step, approver_email)
);
CREATE INDEX approvals_chat_user ON approvals (request_id, platform, chat_user_id);

CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL UNIQUE REFERENCES requests (id),
    subject_email   TEXT NOT NULL,
    app             TEXT NOT NULL,
    entitlement     TEXT NOT NULL,
    connector       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    target          TEXT NOT NULL,        -- the group/team/role in the app, as provisioned
    receipt         TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL,        -- active | revoking | revoked
    approved_by     TEXT,
    granted_at      BIGINT NOT NULL,
    expires_at      BIGINT,              -- NULL: permanent
    revoked_at      BIGINT,
    revoked_by      TEXT,
    revoke_reason   TEXT
);
-- The sweeper's index: only active grants with an end date, by end date.
CREATE INDEX grants_due ON grants (expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
CREATE INDEX grants_subject ON grants (subject_email, state);

-- The durable job queue. A job is enqueued in the same transaction as the change that causes it.
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued',   -- queued | running | done | failed
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    run_at        BIGINT NOT NULL,
    locked_until  BIGINT,
    locked_by     TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE state = 'running';

-- Append-only audit trail; each event carries the hash of the one before it.
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    request_id  TEXT,
    grant_id    TEXT,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_request ON audit_events (request_id);

-- The chain's head: one row, updated by every append (serialises appenders on every backend).
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
