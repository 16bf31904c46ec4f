-- Reminders and escalation are sent once per request: these mark that they were.
ALTER TABLE requests ADD COLUMN reminded_at BIGINT;
ALTER TABLE requests ADD COLUMN escalated_at BIGINT;
-- A card shown to a delegate says on whose behalf.
ALTER TABLE approvals ADD COLUMN on_behalf_of TEXT;

-- Approvers away: their cards go to a delegate until a date.
CREATE TABLE delegations (
    delegator_email TEXT NOT NULL PRIMARY KEY,
    delegate_email  TEXT NOT NULL,
    until_at        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
