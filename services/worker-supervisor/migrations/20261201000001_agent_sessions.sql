-- The agent session each task's jobs continue (`claude --resume`), so plan, implement and fix
-- runs share one conversation with the agent.
CREATE TABLE agent_sessions (
    task_id    TEXT        PRIMARY KEY,
    session_id TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
