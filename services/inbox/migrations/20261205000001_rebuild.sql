-- A rebuild of the read models drops every row derived from TASKS and replays the stream. Two
-- things are not derived and survive it:

-- What the person did to a queue item (read it, answered it): authored here, so kept apart and
-- applied again to the item the replay makes (its id is its event's, the same every time).
CREATE TABLE queue_item_marks (
    item_id      TEXT        PRIMARY KEY,
    read_at      TIMESTAMPTZ,
    response     TEXT,
    responded_at TIMESTAMPTZ
);
INSERT INTO queue_item_marks (item_id, read_at, response, responded_at)
SELECT id, read_at, response, CASE WHEN response IS NOT NULL THEN responded_at END
FROM queue_items
WHERE read_at IS NOT NULL OR response IS NOT NULL;

-- Each rebuild starts a new generation of the projection. A batch or checkpoint of an older
-- generation (a replica that has not noticed yet) is refused, so nothing of the old run lands
-- in the new rows. Events up to `replay_through` were on the feed before: replayed, they are
-- not announced again.
CREATE TABLE projection_generations (
    projection     TEXT   PRIMARY KEY,
    generation     BIGINT NOT NULL,
    replay_through BIGINT NOT NULL
);
INSERT INTO projection_generations (projection, generation, replay_through) VALUES ('tasks', 0, 0);
