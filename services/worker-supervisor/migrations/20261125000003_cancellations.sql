-- Cancellation requests by job id, kept even when they arrive before the job itself (the queue
-- does not order them), and checked before a job starts.
CREATE TABLE cancelled_jobs (
    job_id       TEXT        PRIMARY KEY,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
