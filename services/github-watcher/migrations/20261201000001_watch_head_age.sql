-- The head commit a watch last saw and since when: CI that never appears on it (no CI at all)
-- or stays pending too long is judged by this age, which survives restarts.
ALTER TABLE watches ADD COLUMN head_sha TEXT;
ALTER TABLE watches ADD COLUMN head_seen_at TIMESTAMPTZ;
