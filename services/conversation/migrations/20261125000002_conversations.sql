CREATE TABLE conversations (
    id                    TEXT        PRIMARY KEY,
    user_id               TEXT        NOT NULL,
    title                 TEXT        NOT NULL DEFAULT 'New Conversation',
    summary               TEXT,
    summarized_through_id TEXT,
    message_count         INT         NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at DESC);

CREATE TABLE messages (
    id              TEXT        PRIMARY KEY,
    conversation_id TEXT        NOT NULL REFERENCES conversations (id),
    role            TEXT        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at);

CREATE FUNCTION api_time(at TIMESTAMPTZ) RETURNS TEXT
    LANGUAGE sql IMMUTABLE
    RETURN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

CREATE VIEW api_conversations AS
SELECT c.id, c.user_id, c.updated_at,
       json_build_object('id', c.id, 'user_id', c.user_id, 'title', c.title, 'summary', c.summary,
           'summarized_through_id', c.summarized_through_id, 'message_count', c.message_count,
           'created_at', api_time(c.created_at), 'updated_at', api_time(c.updated_at)) AS body
FROM conversations c;

CREATE VIEW api_messages AS
SELECT m.id, m.conversation_id, m.created_at,
       json_build_object('id', m.id, 'conversation_id', m.conversation_id, 'role', m.role, 'content', m.content,
           'created_at', api_time(m.created_at)) AS body
FROM messages m;
