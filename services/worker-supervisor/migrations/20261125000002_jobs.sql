-- Jobs this supervisor accepted from the WORK queue. A job is accepted (and the work item acked)
-- once it is here; after a restart, jobs that were accepted or running are reported as failed
-- with a retryable error, so the scheduler asks again with the next attempt.
CREATE TABLE jobs (
    job_id      TEXT        NOT NULL,
    attempt     INT         NOT NULL,
    user_id     TEXT        NOT NULL,
    task_id     TEXT        NOT NULL,
    state       TEXT        NOT NULL,
    request     BYTEA       NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, attempt)
);
