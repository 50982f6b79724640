-- A cancelled or failed task's comment threads stay read for a week after it ended, so `/retry`
-- on GitHub works; a completed task's are not read again.
ALTER TABLE threads ADD COLUMN ended_at TIMESTAMPTZ;
