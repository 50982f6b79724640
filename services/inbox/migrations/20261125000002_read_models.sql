-- The inbox's read models, projected from TASKS. Every row is derived: drop the schema and
-- replay the stream to rebuild it.

-- The last stream sequence each projection applied, written in the same transaction as its rows.
CREATE TABLE checkpoints (
    projection      TEXT   PRIMARY KEY,
    stream_sequence BIGINT NOT NULL
);

CREATE TABLE projects (
    id                  TEXT        PRIMARY KEY,
    user_id             TEXT        NOT NULL,
    owner               TEXT        NOT NULL,
    name                TEXT        NOT NULL,
    full_name           TEXT        NOT NULL,
    description         TEXT,
    default_branch      TEXT        NOT NULL DEFAULT 'main',
    avatar_url          TEXT,
    html_url            TEXT        NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    last_used_at        TIMESTAMPTZ NOT NULL,
    metadata_updated_at TIMESTAMPTZ,
    open_pr_count       INT         NOT NULL DEFAULT 0,
    open_issue_count    INT         NOT NULL DEFAULT 0,
    UNIQUE (user_id, full_name)
);

CREATE TABLE tasks (
    id                TEXT        PRIMARY KEY,
    user_id           TEXT        NOT NULL,
    description       TEXT        NOT NULL,
    repo_url          TEXT,
    project_id        TEXT        REFERENCES projects (id),
    conversation_id   TEXT,
    skip_plan         BOOLEAN     NOT NULL DEFAULT false,
    branch_name       TEXT,
    status            TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL,
    error             TEXT,
    issue_url         TEXT,
    issue_number      BIGINT,
    pr_url            TEXT,
    pr_number         BIGINT,
    commit_sha        TEXT,
    plan_text         TEXT,
    plan_revision     INT         NOT NULL DEFAULT 0,
    pending_questions JSONB
);
CREATE INDEX tasks_by_user ON tasks (user_id, created_at DESC);

-- Every status a task passed through, in order.
CREATE TABLE task_history (
    task_id         TEXT        NOT NULL,
    stream_sequence BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    status          TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, stream_sequence)
);

CREATE TABLE queue_items (
    id           TEXT        PRIMARY KEY,
    user_id      TEXT        NOT NULL,
    task_id      TEXT,
    item_type    TEXT        NOT NULL,
    priority     TEXT        NOT NULL,
    title        TEXT        NOT NULL,
    content      TEXT        NOT NULL,
    context      JSONB       NOT NULL DEFAULT '{}',
    options      TEXT[],
    status       TEXT        NOT NULL DEFAULT 'pending',
    response     TEXT,
    responded_at TIMESTAMPTZ,
    read_at      TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ
);
CREATE INDEX queue_items_by_user ON queue_items (user_id, status, created_at DESC);

-- INBOX feed events written with the rows they describe and published after commit, so a
-- crash between the two loses nothing.
CREATE TABLE feed_outbox (
    position   BIGSERIAL PRIMARY KEY,
    subject    TEXT      NOT NULL,
    envelope   BYTEA     NOT NULL
);
