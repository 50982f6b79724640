-- Web Push: the server's VAPID key (one, made at first use), the person's push subscriptions
-- (one per browser, named by its endpoint) and which item went to which endpoint, so an item
-- redelivered after a crash is not pushed twice.
CREATE TABLE push_key (
    only_one    BOOLEAN     PRIMARY KEY DEFAULT true CHECK (only_one),
    private_key BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE push_subscriptions (
    endpoint   TEXT        PRIMARY KEY,
    user_id    TEXT        NOT NULL,
    p256dh     BYTEA       NOT NULL,
    auth       BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

CREATE TABLE push_sent (
    item_id  TEXT        NOT NULL,
    endpoint TEXT        NOT NULL,
    sent_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, endpoint)
);
