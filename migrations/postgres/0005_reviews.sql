-- Access reviews: a campaign asks an app's owners, grant by grant, to keep or revoke.
CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    started_by  TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    escalated_at BIGINT
);

CREATE TABLE review_items (
    id          TEXT PRIMARY KEY,
    review_id   TEXT NOT NULL REFERENCES reviews (id),
    grant_id    TEXT NOT NULL,
    subject_email TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    decision    TEXT,            -- keep | revoke; NULL while unanswered
    decided_by  TEXT,
    decided_at  BIGINT
);
CREATE INDEX review_items_review ON review_items (review_id);

-- Where each owner's card for an item was posted, to update them all after a decision.
CREATE TABLE review_cards (
    item_id   TEXT NOT NULL REFERENCES review_items (id),
    owner_email TEXT NOT NULL,
    platform  TEXT NOT NULL,
    chat_user_id TEXT,
    channel_id TEXT,
    message_ts TEXT,
    PRIMARY KEY (item_id, owner_email)
);
