-- What the directory said about each person last time grantry looked: a department or manager
-- change since then sends their grants to the owners for re-approval.
CREATE TABLE directory_snapshot (
    email       TEXT PRIMARY KEY,
    department  TEXT,
    manager     TEXT,
    seen_at     BIGINT NOT NULL
);
