-- An event of the task that could not be applied (bytes Postgres refuses, a broken invariant):
-- it is dead-lettered and the projection goes on; the task says so.
ALTER TABLE tasks ADD COLUMN history_error TEXT;

CREATE OR REPLACE VIEW api_tasks AS
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
           'plan_revision', t.plan_revision, 'updated_at', api_time(t.updated_at),
           'waiting_for', t.waiting_for, 'history_error', t.history_error
       ) AS body
FROM tasks t;
