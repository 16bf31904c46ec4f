-- Bundles: one request may hold one grant per entitlement of its bundle, so a grant is unique per
-- (request, app, entitlement) rather than per request.
ALTER TABLE grants DROP CONSTRAINT IF EXISTS grants_request_id_key;
CREATE UNIQUE INDEX grants_request_item ON grants (request_id, app, entitlement);
