-- name: state_event_log
-- Outcomes the workers recorded, per provider; deliveries counts every time a worker saw the event.
SELECT provider, outcome, count(*) AS events, sum(deliveries) AS deliveries
  FROM event_log
 GROUP BY provider, outcome
 ORDER BY provider, outcome;

-- name: state_quarantine
SELECT status, count(*) FROM quarantine GROUP BY status;

-- name: state_status_tables
-- Tables with a status column: their claim counts show in GET /local/state.
SELECT table_name
  FROM information_schema.columns
 WHERE table_schema = 'public' AND column_name = 'status'
 ORDER BY table_name;

-- name: state_graph_subscriptions
-- The active Graph subscription per watched mailbox (the storm's Graph flow notifies on it).
SELECT s.mailbox, s.subscription_id
  FROM graph_subscriptions s JOIN graph_mailboxes m ON m.mailbox = s.mailbox
 WHERE s.status = 'active' AND m.watched
 ORDER BY s.mailbox;

-- name: storm_event_log
-- The storm's events as the workers settled them.
SELECT event_key, outcome, deliveries
  FROM event_log
 WHERE provider = %(provider)s AND event_key = ANY(%(keys)s::text[]);

-- name: storm_tickets
-- Tickets per mail of the storm: must be exactly 1 each.
SELECT external_message_id, count(*)
  FROM tickets
 WHERE external_message_id = ANY(%(ids)s::text[])
 GROUP BY external_message_id;

-- name: storm_feedback_add
-- A call waiting for its analysis, as the app records it when the room starts.
INSERT INTO user_feedback (user_id, room_sid, room_name, transcript)
VALUES (%(user_id)s, %(room_sid)s, %(room_name)s, 'agent: how was the call?' || E'\n' || 'user: great, thanks');

-- name: free_connections
-- Connections a new client may still open (superusers' reserve excluded): sizes the local account concurrency.
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - (SELECT count(*) FROM pg_stat_activity);
