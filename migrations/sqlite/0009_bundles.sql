-- Bundles: one request may hold one grant per entitlement of its bundle, so a grant is unique per
-- (request, app, entitlement) rather than per request. SQLite cannot drop a UNIQUE constraint:
-- the table is rebuilt (no table references grants, so nothing else changes).
CREATE TABLE grants_new (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    subject_email   TEXT NOT NULL,
    app             TEXT NOT NULL,
    entitlement     TEXT NOT NULL,
    connector       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    target          TEXT NOT NULL,
    receipt         TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL,
    approved_by     TEXT,
    granted_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    revoked_at      INTEGER,
    revoked_by      TEXT,
    revoke_reason   TEXT,
    UNIQUE (request_id, app, entitlement)
);
INSERT INTO grants_new (id, request_id, subject_email, app, entitlement, connector, account_id, target,
                        receipt, state, approved_by, granted_at, expires_at, revoked_at, revoked_by, revoke_reason)
SELECT id, request_id, subject_email, app, entitlement, connector, account_id, target,
       receipt, state, approved_by, granted_at, expires_at, revoked_at, revoked_by, revoke_reason
FROM grants;
DROP TABLE grants;
ALTER TABLE grants_new RENAME TO grants;
CREATE INDEX grants_due ON grants (expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
CREATE INDEX grants_subject ON grants (subject_email, state);
