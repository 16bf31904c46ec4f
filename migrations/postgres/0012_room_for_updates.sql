-- Room on each page for the rows' next versions (PostgreSQL only: SQLite rewrites a row in place).
--
-- An approval slot is updated where it stands (its card posted, then decided or closed) and none
-- of the columns that change is indexed: with room on its page the new version goes beside the old
-- one (a HOT update) and no index changes. Filled to the brim, a quarter to a third of the decisions
-- of a load test moved their slots to another page and added an entry to each of the three indexes.
ALTER TABLE approvals SET (fillfactor = 60);

-- A request's every state move is a new version of its row, with a new entry in each of its
-- indexes (the state is indexed, so the update cannot be HOT). In the three whose key does not
-- change (its id, idempotency key and creation time) that entry lands beside the old one, on a page
-- that a full index has no room on: a split, or a pass looking for entries to delete first. Room
-- left on each page takes it.
ALTER INDEX requests_pkey SET (fillfactor = 60);
ALTER INDEX requests_idempotency_key_key SET (fillfactor = 60);
ALTER INDEX requests_created SET (fillfactor = 60);
