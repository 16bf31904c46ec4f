-- Service desks: each request of an app with a service desk has one ticket there. The sweeper
-- queues a sync when the request's state differs from `synced_state` and none is queued (`queued`
-- is a compare-and-set, so one sync per ticket runs at a time, on any replica); the sync job
-- creates the ticket if needed, writes the change, records `synced_state` and clears `queued`.
-- A sync given up leaves `failed_state`: not retried until the request moves on.
CREATE TABLE tickets (
    request_id    TEXT PRIMARY KEY REFERENCES requests (id),
    desk          TEXT NOT NULL,
    ticket_key    TEXT,                  -- NULL until the desk answered the create
    url           TEXT,
    inbound       INTEGER NOT NULL DEFAULT 0,  -- 1: the ticket was filed in the desk first
    queued        INTEGER NOT NULL DEFAULT 0,  -- 1 while a sync job is queued or running
    failed_state  TEXT,                  -- the state whose sync was given up
    synced_state  TEXT,                  -- the last state written to the ticket
    resolved      INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL
);
