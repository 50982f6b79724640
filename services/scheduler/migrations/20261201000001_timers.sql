-- Durable timers: what the scheduler must do to a task at a given time (a failed job's next
-- attempt). Written from the TASKS event that asked for it (idempotent on its key), fired once
-- by whichever replica locks the row first, deleted once the task has been told.
CREATE TABLE timers (
    task_id TEXT        NOT NULL,
    user_id TEXT        NOT NULL,
    kind    TEXT        NOT NULL,
    key     TEXT        NOT NULL,
    due_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, kind, key)
);
CREATE INDEX timers_due ON timers (due_at);
