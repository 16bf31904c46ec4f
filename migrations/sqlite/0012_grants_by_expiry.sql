-- A subject's active grants in expiry order, straight from the index (SQLite only).
--
-- Intake reads each subject's first grants by expiry before its policy decision. With the expiry
-- and id in the index the read walks it in that order and stops at its limit; before, SQLite
-- sorted them in a temporary b-tree (a pager opened and closed on every read). Every query that
-- used the two-column index uses this one's first two columns the same way.
DROP INDEX grants_subject;
CREATE INDEX grants_subject ON grants (subject_email, state, expires_at, id);
