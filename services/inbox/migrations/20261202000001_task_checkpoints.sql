-- Order is kept per task, not for the whole stream: each task (its TASKS subject) records the
-- last sequence applied to its rows, in the same transaction as those rows, so an event handed
-- over again after a restart is skipped. `checkpoints` now holds the low-water mark: every event
-- at or below it is applied (or dead-lettered), and reading resumes after it.
CREATE TABLE task_checkpoints (
    subject         TEXT   PRIMARY KEY,
    stream_sequence BIGINT NOT NULL
);
