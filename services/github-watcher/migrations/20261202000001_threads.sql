-- Issues and pull requests whose comments a task reads (a pull request is an issue too), and how
-- far it has read: the newest comment seen (its id, and its `updated_at` for GitHub's `since`,
-- which is inclusive, so comments at that instant are read again and skipped by id). NULL: never
-- read; empty: read, no comment yet.
CREATE TABLE threads (
    task_id  TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    owner    TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    number   BIGINT  NOT NULL,
    active   BOOLEAN NOT NULL DEFAULT true,
    seen_id  BIGINT  NOT NULL DEFAULT 0,
    seen_at  TEXT,
    PRIMARY KEY (task_id, number)
);

-- Who may steer: a collaborator's permission on a repository, looked up once in a while.
CREATE TABLE permissions (
    owner      TEXT        NOT NULL,
    name       TEXT        NOT NULL,
    login      TEXT        NOT NULL,
    permission TEXT        NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name, login)
);
