-- Extension requests point at the grant they lengthen.
ALTER TABLE requests ADD COLUMN extends_grant TEXT;
