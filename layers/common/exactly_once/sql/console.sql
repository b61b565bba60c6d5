-- The operator console's reads (ops/console/views.py) and its action keys (ops/console/actions.py).
-- Every read is bounded (LIMIT, a time window) and served by an index of 0012_console.sql.

-- name: console_event_buckets
-- Per provider and hour: events the worker settled, the later deliveries it answered from the event log,
-- the effects the database layer found already made, the effects made and the events quarantined.
SELECT provider, date_trunc('hour', first_seen_at) AS hour, count(*) AS events,
       COALESCE(sum(deliveries - 1), 0)::bigint AS worker_duplicates,
       count(*) FILTER (WHERE split_part(outcome, ':', 1) IN ('duplicate', 'recovered')) AS database_duplicates,
       count(*) FILTER (WHERE effect_id IS NOT NULL
                          AND split_part(outcome, ':', 1) NOT IN ('duplicate', 'recovered', 'quarantined')) AS effects,
       count(*) FILTER (WHERE outcome = 'quarantined') AS quarantined
  FROM event_log
 WHERE first_seen_at >= now() - make_interval(hours => %(hours)s)
 GROUP BY provider, date_trunc('hour', first_seen_at)
 ORDER BY provider, hour;

-- name: console_send_counts
SELECT status::text AS status, count(*) AS count FROM send_queue GROUP BY status ORDER BY status;

-- name: console_events_search
-- Newest first; keyset paging on id (before_id); the key matches as a prefix (LIKE-escaped by the caller).
SELECT id, provider, event_key, kind, outcome, effect_id, deliveries, replay_of, first_seen_at, last_seen_at
  FROM event_log
 WHERE (%(provider)s::text IS NULL OR provider = %(provider)s::text)
   AND (%(key_prefix)s::text IS NULL OR event_key LIKE %(key_prefix)s::text)
   AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s::text)
   AND (%(since)s::timestamptz IS NULL OR first_seen_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR first_seen_at < %(until)s::timestamptz)
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: console_sends_waiting
-- Sends a person must look at: review (outcome unknown after reconciliation) and unknown (being reconciled).
SELECT id, idempotency_key, channel, sender_account, recipient, status::text AS status, policy::text AS policy,
       attempts, max_attempts, reconcile_attempts, call_started_at, provider_message_id, last_error,
       created_at, status_changed_at
  FROM send_queue
 WHERE status::text = ANY(%(statuses)s::text[])
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: console_mailbox_users
-- Mailbox users with their pending or latest job; never the password (its secret's name stays out too).
SELECT c.user_id, c.enabled, c.interval_minutes, c.last_check_time,
       j.job_id, j.status, j.attempts, j.origin, j.mails_seen, j.mails_processed, j.error, j.created_at AS job_created_at,
       j.finished_at
  FROM mailbox_configs c
  LEFT JOIN LATERAL (
        SELECT job_id, status, attempts, origin, mails_seen, mails_processed, error, created_at, finished_at
          FROM mailbox_jobs WHERE user_id = c.user_id ORDER BY slot DESC, id DESC LIMIT 1
       ) j ON true
 WHERE (%(after_user)s::text IS NULL OR c.user_id > %(after_user)s::text)
 ORDER BY c.user_id
 LIMIT %(limit)s;

-- name: console_action_claim
INSERT INTO console_actions (idempotency_key, action, target, request_hash, requested_by)
VALUES (%(key)s, %(action)s, %(target)s, %(request_hash)s, %(by)s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key;

-- name: console_action_get
SELECT action, target, request_hash, answer FROM console_actions WHERE idempotency_key = %(key)s;

-- name: console_action_answer
UPDATE console_actions SET answer = %(answer)s, answered_at = now() WHERE idempotency_key = %(key)s;

-- name: console_action_release
-- The action failed: the key is free again, so a retry runs it (and meets the same refusal, or succeeds).
DELETE FROM console_actions WHERE idempotency_key = %(key)s AND answer IS NULL;

-- name: console_send_recipient
SELECT sender_account, recipient, payload FROM send_queue WHERE id = %(id)s;
