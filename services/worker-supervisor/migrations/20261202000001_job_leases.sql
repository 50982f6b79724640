-- Several supervisor replicas share the work: each job is held by one of them (owner, its
-- WORKER_ID) under a lease it renews while the job runs. A job whose lease ran out (its replica
-- stopped) is taken over by exactly one other replica, by an atomic claim on this row.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX jobs_unfinished ON jobs (lease_until) WHERE state IN ('accepted', 'running');
