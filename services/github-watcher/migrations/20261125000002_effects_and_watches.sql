-- GitHub effects by idempotency key. 'started' is written before acting, 'done' with the result
-- after: a redelivered request finds 'done' and repeats only the report, or finds 'started' and
-- first looks on GitHub for what the earlier attempt may have made.
CREATE TABLE effects (
    effect_id  TEXT        PRIMARY KEY,
    state      TEXT        NOT NULL,
    result     BYTEA,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which repository each task works on (from TaskSpawned).
CREATE TABLE task_repos (
    task_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    owner   TEXT NOT NULL,
    name    TEXT NOT NULL
);

-- Pull requests to poll, and what was last reported about each, so every change is reported once.
CREATE TABLE watches (
    task_id   TEXT    PRIMARY KEY,
    user_id   TEXT    NOT NULL,
    owner     TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    pr_number BIGINT  NOT NULL,
    active    BOOLEAN NOT NULL DEFAULT true,
    reported  TEXT
);
