-- Microsoft Teams: where to reach a person (or a channel) proactively. The Bot Connector needs the
-- conversation id and the service URL of the region that hosts it; both arrive on every activity
-- a person sends the bot, or come back from creating a 1:1 conversation.
CREATE TABLE teams_conversations (
    -- The key grantry knows the person by on Teams: their Entra object id (the people file's
    -- teams_id), or a channel conversation id for channels.
    user_key        TEXT PRIMARY KEY,
    -- The Teams user id (29:…) used to create conversations with them.
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    service_url     TEXT NOT NULL,
    tenant_id       TEXT,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX teams_conversations_by_conversation ON teams_conversations (conversation_id);
