-- Each expiry warning (per threshold) is sent once per grant.
CREATE TABLE grant_warnings (
    grant_id          TEXT NOT NULL,
    threshold_minutes BIGINT NOT NULL,
    at                BIGINT NOT NULL,
    PRIMARY KEY (grant_id, threshold_minutes)
);

-- People who left: every grant revoked, every open request cancelled, no new requests.
CREATE TABLE offboarded (
    email  TEXT PRIMARY KEY,
    at     BIGINT NOT NULL,
    by_who TEXT NOT NULL
);

-- Scheduled work runs once per slot across replicas: the first to insert the slot runs it.
CREATE TABLE schedule_runs (
    name  TEXT NOT NULL,
    slot  BIGINT NOT NULL,
    at    BIGINT NOT NULL,
    PRIMARY KEY (name, slot)
);
