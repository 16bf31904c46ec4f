-- The admin pages list requests and grants newest first, one page at a time: these keep each page an
-- index walk rather than a sort of the whole table.
CREATE INDEX requests_created ON requests (created_at);
CREATE INDEX grants_granted ON grants (granted_at);
