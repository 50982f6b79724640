-- Full-text search over every message of a person's conversations (English stemming, so
-- "deploying" finds "deploy").
CREATE INDEX messages_search ON messages USING gin (to_tsvector('english', content));
