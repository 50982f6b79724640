-- How far each task has read its pull request's reviews and review comments.
CREATE TABLE review_cursors (
    task_id         TEXT   PRIMARY KEY,
    seen_review_id  BIGINT NOT NULL DEFAULT 0,
    seen_comment_id BIGINT NOT NULL DEFAULT 0
);
