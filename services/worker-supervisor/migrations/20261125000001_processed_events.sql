-- Events this service has applied, so a redelivered event is applied once
-- (see mainloop_runtime::idempotency).
CREATE TABLE processed_events (
    consumer        TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    stream_sequence BIGINT      NOT NULL,
    processed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
