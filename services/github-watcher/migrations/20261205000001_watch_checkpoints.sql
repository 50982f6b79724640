-- The watches are a projection in order per task (mainloop_bus::keyed): each task's last TASKS
-- sequence applied, written with its rows, and the projection's low-water mark.
CREATE TABLE task_checkpoints (
    subject         TEXT   PRIMARY KEY,
    stream_sequence BIGINT NOT NULL
);
CREATE TABLE checkpoints (
    projection      TEXT   PRIMARY KEY,
    stream_sequence BIGINT NOT NULL
);
