-- The W3C traceparent of the event that caused a feed row, so its publish continues that trace.
ALTER TABLE feed_outbox ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
