-- Operator queries: the quarantine review and replay, and trace. Never on a webhook's hot path.

-- name: ops_quarantine_list
SELECT id, provider, event_key, external_id, reason, status, attempts, created_at, updated_at,
       envelope IS NOT NULL AS replayable
  FROM quarantine
 WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: ops_quarantine_get
SELECT id, provider, event_key, external_id, reason, raw, status, attempts, note, handled_by, handled_at,
       created_at, updated_at, envelope
  FROM quarantine
 WHERE id = %(id)s;

-- name: ops_quarantine_lock
-- The row a replay or a resolve works on, locked so two operators cannot both act on it.
SELECT id, provider, event_key, status, envelope, raw
  FROM quarantine
 WHERE id = %(id)s
   FOR UPDATE;

-- name: ops_quarantine_handle
UPDATE quarantine
   SET status = %(status)s, note = COALESCE(%(note)s, note), handled_by = %(by)s, handled_at = now(), updated_at = now()
 WHERE id = %(id)s
RETURNING id, status;

-- name: ops_quarantine_counts
SELECT provider, status, count(*) FROM quarantine GROUP BY provider, status ORDER BY provider, status;

-- name: ops_event_outcome
SELECT kind, outcome FROM event_log WHERE provider = %(provider)s AND event_key = %(event_key)s;

-- name: ops_replay_insert
INSERT INTO replay_log (quarantine_id, provider, event_key, replayed_key, previous_outcome, requested_by, note)
VALUES (%(quarantine_id)s, %(provider)s, %(event_key)s, %(replayed_key)s, %(previous_outcome)s, %(by)s, %(note)s)
RETURNING id, requested_at;

-- name: ops_replay_sent
UPDATE replay_log SET queue_message_id = %(message_id)s WHERE id = %(id)s;

-- name: ops_replay_not_sent
-- The queue refused the replay: the quarantine row is open again and the replay says why.
WITH r AS (
    UPDATE replay_log SET outcome = 'not_sent', settled_at = now() WHERE id = %(id)s RETURNING quarantine_id
)
UPDATE quarantine SET status = 'open', updated_at = now()
 WHERE id = (SELECT quarantine_id FROM r) AND status = 'replayed';

-- name: ops_replay_settled
-- The worker settled a replay: what it made of it.
UPDATE replay_log SET outcome = %(outcome)s, settled_at = now()
 WHERE id = %(id)s AND provider = %(provider)s;

-- name: ops_trace_event
SELECT provider, event_key, kind, outcome, effect_id, deliveries, replay_of, first_seen_at, last_seen_at
  FROM event_log
 WHERE event_key = %(event_key)s AND (%(provider)s::text IS NULL OR provider = %(provider)s::text);

-- name: ops_trace_quarantine
SELECT id, provider, event_key, external_id, reason, status, attempts, note, handled_by, handled_at, created_at
  FROM quarantine
 WHERE event_key = %(event_key)s AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
 ORDER BY id;

-- name: ops_trace_replays
SELECT id, quarantine_id, replayed_key, previous_outcome, requested_by, requested_at, note, queue_message_id,
       outcome, settled_at
  FROM replay_log
 WHERE event_key = %(event_key)s AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
 ORDER BY id;

-- name: ops_trace_graph_mail
-- The effect of a Graph mail notification: the ticket or comment made from that Graph message.
(SELECT 'ticket' AS effect, id, external_message_id, NULL::bigint AS ticket_id, created_at
   FROM tickets WHERE graph_message_id = %(graph_message_id)s)
UNION ALL
(SELECT 'comment', id, external_message_id, ticket_id, created_at
   FROM ticket_comments WHERE graph_message_id = %(graph_message_id)s)
ORDER BY created_at;

-- name: ops_trace_graph_quarantine_by_mail
-- Quarantine rows that name the same mail (a constraint that did not resolve to a row).
SELECT id, event_key, reason, status, created_at FROM quarantine
 WHERE provider = 'graph' AND external_id = ANY(%(message_ids)s::text[]) ORDER BY id;

-- name: ops_open_quarantine
-- Rows awaiting an operator, per provider: the OpenQuarantine gauge.
SELECT provider, count(*) FROM quarantine WHERE status = 'open' GROUP BY provider;

-- name: ops_stuck_rows
-- In-flight rows nobody moved for 5 minutes past their lease (or, without a lease, since their last change):
-- the reapers should have taken them back, so a non-zero count means a reaper or a flow is broken.
-- The send queue measures its own (send_reconcile.stuck_rows).
SELECT 'livekit' AS flow, count(*) FROM user_feedback
 WHERE status = 'processing' AND COALESCE(lease_until, updated_at) < now() - interval '5 minutes'
UNION ALL
SELECT 'mailbox', count(*) FROM mailbox_jobs
 WHERE status IN ('scheduled', 'queued', 'running')
   AND COALESCE(lease_until, updated_at) < now() - interval '5 minutes';

-- name: ops_trace_event_payload
SELECT payload FROM event_log WHERE provider = %(provider)s AND event_key = %(event_key)s;

-- name: ops_trace_livekit_feedback
-- The feedback claim of a room: status, attempts, whether a claim is held and until when.
SELECT 'feedback' AS effect, id, status::text AS status, attempts, claim_token IS NOT NULL AS claimed, lease_until,
       last_error, completed_at, updated_at
  FROM user_feedback
 WHERE room_sid = %(sid)s OR (%(sid)s::text IS NULL AND room_name = %(name)s)
 ORDER BY created_at;

-- name: ops_trace_whatsapp_message
SELECT 'whatsapp_message' AS effect, id, wamid, type, received_at FROM whatsapp_messages WHERE wamid = %(wamid)s;

-- name: ops_trace_send
-- A send: by its idempotency key (the reply to a message) or by the provider's message id (a status).
SELECT 'send' AS effect, id, idempotency_key, channel, status::text AS status, attempts, reconcile_attempts,
       claim_token IS NOT NULL AS claimed, lease_until, provider_message_id, sent_at, last_error
  FROM send_queue
 WHERE idempotency_key = %(idempotency_key)s OR provider_message_id = %(provider_message_id)s
 ORDER BY id;

-- name: ops_trace_delivery
SELECT 'delivery_status' AS effect, provider_message_id, status, status_at, updated_at
  FROM message_delivery WHERE provider_message_id = %(wamid)s;

-- name: ops_trace_send_by_id
-- A send in review is quarantined as send:<id>: the row, its claims and attempts.
SELECT 'send' AS effect, id, idempotency_key, channel, status::text AS status, policy::text AS policy, attempts,
       reconcile_attempts, claim_token IS NOT NULL AS claimed, lease_until, call_started_at, provider_message_id,
       sent_at, last_error
  FROM send_queue WHERE id = %(id)s;

-- name: ops_trace_send_ledger
SELECT 'sent_ledger' AS effect, id, provider_message_id, settled_by, attempt, sent_at
  FROM sent_messages WHERE send_id = %(id)s;

-- name: ops_trace_send_outbox
SELECT 'outbox' AS effect, count(*) AS relay_records, count(relayed_at) AS relayed, COALESCE(sum(relays), 0) AS relays
  FROM send_outbox WHERE send_id = %(id)s;

-- name: ops_trace_linkedin_message
-- The LinkedIn message an Unipile event recorded (or found already recorded): ids, direction, which delivery.
SELECT 'linkedin_message' AS effect, id, account_id, message_id, chat_id, direction, event_key, created_at
  FROM linkedin_messages WHERE id = %(id)s;

-- name: ops_trace_mailbox_job
-- A mailbox job (mbx-<user>-<slot>): its claim, attempts, lease and what it processed; ids and counts only.
SELECT 'mailbox_job' AS effect, id, job_id, user_id, origin, status, attempts, claim_token IS NOT NULL AS claimed,
       lease_until, mails_seen, mails_processed, error, created_at, started_at, finished_at
  FROM mailbox_jobs WHERE job_id = %(job_id)s;
