-- Per-person API tokens (`mainloop tokens create|list|revoke`): only each token's SHA-256 is kept.
CREATE TABLE api_tokens (
    id          TEXT        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    label       TEXT        NOT NULL DEFAULT '',
    token_hash  BYTEA       NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
