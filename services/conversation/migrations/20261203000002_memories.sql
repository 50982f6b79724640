-- The temporal pyramid: one summary per person per day, week (Monday first) and month they
-- talked, each written once.
CREATE TABLE memories (
    user_id   TEXT        NOT NULL,
    span      TEXT        NOT NULL CHECK (span IN ('day', 'week', 'month')),
    starts_on DATE        NOT NULL,
    summary   TEXT        NOT NULL,
    made_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, span, starts_on)
);
