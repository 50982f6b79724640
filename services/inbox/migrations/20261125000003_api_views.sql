-- The JSON shapes of the original REST API (seed-api.md §1), built where the rows are: every
-- field present (null when unknown), timestamps as RFC 3339 UTC with Z.

CREATE FUNCTION api_time(at TIMESTAMPTZ) RETURNS TEXT
    LANGUAGE sql IMMUTABLE
    RETURN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

CREATE VIEW api_tasks AS
SELECT t.id, t.user_id, t.status, t.project_id, t.created_at,
       json_build_object(
           'id', t.id, 'main_thread_id', NULL, 'user_id', t.user_id, 'task_type', 'feature',
           'description', t.description, 'prompt', 'Implement: ' || t.description, 'model', NULL,
           'repo_url', t.repo_url, 'project_id', t.project_id, 'branch_name', t.branch_name,
           'base_branch', 'main', 'status', t.status, 'workflow_run_id', NULL, 'worker_pod_name', NULL,
           'created_at', api_time(t.created_at), 'started_at', api_time(t.started_at),
           'completed_at', api_time(t.completed_at), 'result', NULL, 'error', t.error,
           'issue_url', t.issue_url, 'issue_number', t.issue_number, 'issue_etag', NULL,
           'issue_last_modified', NULL, 'pr_url', t.pr_url, 'pr_number', t.pr_number, 'pr_etag', NULL,
           'pr_last_modified', NULL, 'commit_sha', t.commit_sha, 'conversation_id', t.conversation_id,
           'message_id', NULL, 'keywords', '[]'::json, 'skip_plan', t.skip_plan,
           'pending_questions', t.pending_questions, 'plan_text', t.plan_text,
           'plan_revision', t.plan_revision, 'updated_at', api_time(t.updated_at)
       ) AS body
FROM tasks t;

CREATE VIEW api_queue_items AS
SELECT q.id, q.user_id, q.task_id, q.status, q.read_at, q.created_at,
       CASE q.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END AS rank,
       json_build_object(
           'id', q.id, 'main_thread_id', NULL, 'task_id', q.task_id, 'user_id', q.user_id,
           'item_type', q.item_type, 'priority', q.priority, 'title', q.title, 'content', q.content,
           'context', q.context, 'options', q.options, 'status', q.status, 'response', q.response,
           'responded_at', api_time(q.responded_at), 'read_at', api_time(q.read_at),
           'created_at', api_time(q.created_at), 'expires_at', api_time(q.expires_at)
       ) AS body
FROM queue_items q;

CREATE VIEW api_projects AS
SELECT p.id, p.user_id, p.last_used_at,
       json_build_object(
           'id', p.id, 'user_id', p.user_id, 'owner', p.owner, 'name', p.name, 'full_name', p.full_name,
           'description', p.description, 'default_branch', p.default_branch, 'avatar_url', p.avatar_url,
           'html_url', p.html_url, 'created_at', api_time(p.created_at),
           'last_used_at', api_time(p.last_used_at), 'metadata_updated_at', api_time(p.metadata_updated_at),
           'open_pr_count', p.open_pr_count, 'open_issue_count', p.open_issue_count
       ) AS body
FROM projects p;
