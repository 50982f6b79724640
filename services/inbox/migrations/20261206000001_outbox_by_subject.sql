-- A transaction that writes feed rows reads back the rows of the same subjects (people) still
-- waiting before them, to publish them first: by subject, in order.
CREATE INDEX feed_outbox_by_subject ON feed_outbox (subject, position);
