CREATE TABLE processed_events (
    consumer        TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    stream_sequence BIGINT      NOT NULL,
    processed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE spawned_tasks (
    task_id TEXT PRIMARY KEY,
    times   INT  NOT NULL
);
