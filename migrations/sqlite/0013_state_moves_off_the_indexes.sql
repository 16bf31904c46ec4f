-- PostgreSQL's 0013 takes the state out of every index of requests, so that a move between two
-- states under way is a HOT update there. SQLite rewrites a row in place, with a delete and an
-- insert in each index whose key (or partial index's condition) the move changes, so it keeps the
-- one index on the state and takes the state out of the requester's. Both run the same reads: the
-- `under_way` column they filter on is computed here when read (SQLite adds a computed column only
-- as VIRTUAL).
ALTER TABLE requests ADD COLUMN under_way INTEGER
    GENERATED ALWAYS AS (state IN ('submitted', 'pending_approval', 'approved', 'provisioning', 'failed')) VIRTUAL;
DROP INDEX requests_requester;
-- A person's requests (as requester, as subject): each card counts its subject's open ones.
CREATE INDEX requests_requester ON requests (requester_email);
CREATE INDEX requests_subject ON requests (subject_email);
-- The extension requests of a grant, ended with it (each expiry or revoke looks them up).
CREATE INDEX requests_extending ON requests (extends_grant) WHERE extends_grant IS NOT NULL;
