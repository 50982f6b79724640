-- Comments of ours whose reactions are read (the "how to steer" comment while a plan waits for
-- review: a reaction by someone with write access approves), and the newest reaction seen.
CREATE TABLE reaction_watches (
    task_id    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    comment_id BIGINT  NOT NULL,
    seen_id    BIGINT  NOT NULL DEFAULT 0,
    active     BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (task_id, comment_id)
);
