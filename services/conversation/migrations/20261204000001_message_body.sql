-- A message as the API shows it, in one place: the view uses it, and so does the statement that
-- stores a reply (it answers with the stored message without reading it again).
CREATE FUNCTION api_message_body(m messages) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', m.id, 'conversation_id', m.conversation_id, 'role', m.role,
        'content', m.content, 'created_at', api_time(m.created_at))
$$;

CREATE OR REPLACE VIEW api_messages AS
SELECT m.id, m.conversation_id, m.created_at, api_message_body(m) AS body
FROM messages m;
