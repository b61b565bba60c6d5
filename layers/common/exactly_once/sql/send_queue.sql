-- name: send_enqueue
-- One statement: the row (unique on the key) and its outbox record, or the existing row.
-- DO UPDATE (a no-op) rather than DO NOTHING: it locks and RETURNS a row committed after this
-- statement's snapshot was taken, so a racing enqueue of the same key always sees the winner.
WITH item AS (
    INSERT INTO send_queue (idempotency_key, channel, sender_account, recipient, payload, payload_hash, policy,
                            scheduled_for)
    VALUES (%(key)s, %(channel)s, %(sender_account)s, %(recipient)s, %(payload)s, %(payload_hash)s,
            %(policy)s::send_policy, COALESCE(%(scheduled_for)s::timestamptz, now()))
    ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
    RETURNING id, status::text AS status, payload_hash, scheduled_for, (xmax = 0) AS created
), outbox AS (
    INSERT INTO send_outbox (send_id, available_at)
    SELECT id, scheduled_for FROM item WHERE created
    RETURNING id
)
SELECT id, created, status, payload_hash FROM item;

-- name: send_relay_take
-- Outbox records ready to relay: those of the given rows (the after-commit relay, ids set) or
-- every record older than the grace period (the sweeper, ids NULL). SKIP LOCKED: a relay and
-- the sweeper never hold the same record; the lock is kept until the records are marked.
SELECT o.id AS outbox_id, s.id AS send_id, s.channel, s.sender_account
  FROM send_outbox o
  JOIN send_queue s ON s.id = o.send_id
 WHERE o.relayed_at IS NULL
   AND o.available_at <= now()
   AND (%(ids)s::bigint[] IS NULL AND o.created_at <= now() - make_interval(secs => %(grace_seconds)s)
        OR o.send_id = ANY(%(ids)s::bigint[]))
 ORDER BY o.id
 LIMIT %(limit)s
   FOR UPDATE OF o SKIP LOCKED;

-- name: send_relay_mark
UPDATE send_outbox SET relayed_at = now(), relays = relays + 1 WHERE id = ANY(%(outbox_ids)s::bigint[]);

-- name: send_requeue_stale
-- Safety net: a pending, due row with no outbox record waiting and none relayed recently
-- (its message went to the DLQ, or was lost) gets a new record for the sweeper.
INSERT INTO send_outbox (send_id)
SELECT s.id
  FROM send_queue s
 WHERE s.status = 'pending'
   AND s.scheduled_for <= now() - make_interval(secs => %(stale_seconds)s)
   AND NOT EXISTS (
       SELECT 1 FROM send_outbox o
        WHERE o.send_id = s.id
          AND (o.relayed_at IS NULL OR o.relayed_at > now() - make_interval(secs => %(stale_seconds)s)))
 LIMIT %(limit)s
RETURNING send_id;

-- name: send_claim
-- The atomic claim, in ONE statement: only a pending, due row; only if the sender's pacing
-- allows one more send now (caps, spacing, working hours, no pause), which it takes in the same
-- statement. Concurrent claimers wait on the row lock and then re-check status = 'pending'
-- (READ COMMITTED re-evaluates the WHERE on the new row version): exactly one wins.
-- A new sender's row is created with the defaults; it takes the first send only if its cap
-- allows one (a cap of 0 creates the row with nothing taken, and the claim fails).
WITH target AS (
    SELECT id, channel, sender_account
      FROM send_queue
     WHERE id = %(id)s AND status = 'pending' AND scheduled_for <= now()
       FOR UPDATE
), pace AS (
    -- sender_pacing_take (migration 0013): the account's row (created with the channel's defaults),
    -- locked; one send taken if its rules allow one now (caps per local day and week, spacing with
    -- jitter, working hours in its time zone, no pause).
    SELECT sender_pacing_take(channel, sender_account, %(pacing)s::jsonb -> channel) AS taken FROM target
), claimed AS (
    UPDATE send_queue s
       SET status = 'processing',
           claim_token = %(token)s,
           attempts = s.attempts + 1,
           lease_until = now() + make_interval(secs => %(lease_seconds)s),
           call_started_at = now(),
           status_changed_at = now(),
           updated_at = now()
      FROM target t
     WHERE s.id = t.id AND EXISTS (SELECT 1 FROM pace WHERE taken)
    RETURNING s.id, s.channel, s.sender_account, s.recipient, s.payload, s.policy::text AS policy, s.attempts,
              s.max_attempts, s.call_started_at
)
SELECT id, channel, sender_account, recipient, payload, policy, attempts, max_attempts, call_started_at FROM claimed;

-- name: send_state
-- Why a claim did not happen: the row's state and, when pacing held it back, when it may go.
SELECT s.status::text AS status,
       s.scheduled_for <= now() AS due,
       s.scheduled_for,
       CASE WHEN p.channel IS NOT NULL
            THEN coalesce(sender_pacing_next(p), now() + interval '1 day') END AS pacing_next
  FROM send_queue s
  LEFT JOIN sender_pacing p ON p.channel = s.channel AND p.sender_account = s.sender_account
 WHERE s.id = %(id)s;

-- name: send_defer
-- Pacing said "not now": move the row's time FORWARD, never back, to the latest of %(until)s (what
-- the caller read), the sender's pacing as it stands now, and now; with an outbox record for then.
-- A row rescheduled later in between (a warning's resume time, another worker's deferral) keeps
-- its time, and its own record: only a move forward adds one, so the copies of a paced row's
-- message that overlapping workers receive add no records. The row lock makes a concurrent
-- deferral re-check scheduled_for on the row as the first one left it.
WITH pacing AS (
    -- no working day at all (sender_pacing_next is NULL): look again in a day, not every second
    SELECT coalesce(sender_pacing_next(p), now() + interval '1 day') AS next_at
      FROM send_queue s
      JOIN sender_pacing p ON p.channel = s.channel AND p.sender_account = s.sender_account
     WHERE s.id = %(id)s
), moved AS (
    UPDATE send_queue s
       SET scheduled_for = t.at, updated_at = now()
      FROM (SELECT GREATEST(%(until)s::timestamptz, (SELECT next_at FROM pacing), now()) AS at) t
     WHERE s.id = %(id)s AND s.status = 'pending' AND s.scheduled_for < t.at
    RETURNING s.id, s.scheduled_for
)
INSERT INTO send_outbox (send_id, available_at)
SELECT id, scheduled_for FROM moved
RETURNING id;

-- name: send_complete
-- Fenced on the claim token: sent, and the ledger row, in one statement. A unique violation of
-- the ledger (a second send of this row, or a provider id already recorded) aborts it whole.
WITH done AS (
    UPDATE send_queue
       SET status = 'sent',
           provider_message_id = %(provider_message_id)s,
           sent_at = COALESCE(%(sent_at)s::timestamptz, now()),
           lease_until = NULL,
           last_error = NULL,
           status_changed_at = now(),
           updated_at = now()
     WHERE id = %(id)s AND claim_token = %(token)s AND status IN ('processing', 'unknown')
    RETURNING id, channel, sender_account, recipient, payload_hash, attempts, sent_at
), ledger AS (
    INSERT INTO sent_messages (send_id, channel, sender_account, recipient, provider_message_id, payload_hash,
                               settled_by, attempt, sent_at)
    SELECT id, channel, sender_account, recipient, %(provider_message_id)s, payload_hash, %(settled_by)s, attempts,
           sent_at
      FROM done
    RETURNING id
)
SELECT (SELECT count(*) FROM done) AS updated, (SELECT count(*) FROM ledger) AS recorded;

-- name: send_release
-- Fenced: back to pending at %(until)s with an outbox record (warning, rate limit, a send that
-- surely never left, reconciliation that found nothing), or failed once counted attempts run out.
-- A warning also pauses the whole sender account until the resume time.
WITH rel AS (
    UPDATE send_queue
       SET status = (CASE WHEN %(count_attempt)s AND attempts >= max_attempts THEN 'failed' ELSE 'pending'
                     END)::send_status,
           scheduled_for = %(until)s,
           claim_token = NULL,
           lease_until = NULL,
           last_error = %(error)s,
           status_changed_at = now(),
           updated_at = now()
     WHERE id = %(id)s AND claim_token = %(token)s AND status IN ('processing', 'unknown')
    RETURNING id, status::text AS status, scheduled_for, channel, sender_account
), outbox AS (
    INSERT INTO send_outbox (send_id, available_at)
    SELECT id, scheduled_for FROM rel WHERE status = 'pending'
    RETURNING id
), pause AS (
    UPDATE sender_pacing p
       SET paused_until = GREATEST(p.paused_until, %(pause_until)s::timestamptz), updated_at = now()
      FROM rel
     WHERE %(pause_until)s::timestamptz IS NOT NULL
       AND p.channel = rel.channel AND p.sender_account = rel.sender_account
    RETURNING 1
)
SELECT rel.status, (SELECT id FROM outbox) AS outbox_id FROM rel;

-- name: send_settle
-- Fenced: failed (a permanent answer), unknown (the request may have left) or review
-- (nobody can tell; a person decides). The claim token stays: the reconciler takes a new one.
UPDATE send_queue
   SET status = %(status)s::send_status,
       last_error = %(error)s,
       lease_until = NULL,
       status_changed_at = now(),
       updated_at = now()
 WHERE id = %(id)s AND claim_token = %(token)s AND status IN ('processing', 'unknown')
RETURNING id;

-- name: send_expire_leases
-- The reaper: processing past the lease (the worker died or timed out; the lease is longer than
-- the worker's timeout, so it no longer runs) -> unknown, for reconciliation. Never pending.
UPDATE send_queue
   SET status = 'unknown',
       last_error = 'lease expired while processing: the worker stopped, the send may have happened',
       lease_until = NULL,
       status_changed_at = now(),
       updated_at = now()
 WHERE id IN (SELECT id FROM send_queue
               WHERE status = 'processing' AND lease_until < now()
               ORDER BY lease_until LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: send_take_unknown
-- The reconciler takes unknown rows older than the settling delay (a request that hung may
-- still land): a fresh claim token fences out anyone still holding the old one. It takes them
-- one at a time while the run has time left (a taken row counts a reconciliation attempt), and
-- never a row it already took in this run (%(seen)s).
UPDATE send_queue
   SET claim_token = %(token)s,
       reconcile_attempts = reconcile_attempts + 1,
       updated_at = now()
 WHERE id IN (SELECT id FROM send_queue
               WHERE status = 'unknown' AND updated_at <= now() - make_interval(secs => %(after_seconds)s)
                 AND id <> ALL(%(seen)s::bigint[])
               ORDER BY updated_at LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
RETURNING id, channel, sender_account, recipient, payload, policy::text AS policy, attempts, max_attempts,
          call_started_at, reconcile_attempts;

-- name: send_ledger_known
-- Which of these provider message ids already settled a row (reconciliation skips them).
SELECT provider_message_id FROM sent_messages
 WHERE channel = %(channel)s AND provider_message_id = ANY(%(ids)s::text[]);

-- name: send_stuck
-- Rows stuck in processing or unknown longer than the threshold, and rows unknown now.
SELECT count(*) FILTER (WHERE status_changed_at < now() - make_interval(secs => %(stuck_seconds)s)) AS stuck,
       count(*) FILTER (WHERE status = 'unknown') AS unknown
  FROM send_queue
 WHERE status IN ('processing', 'unknown');

-- name: send_pacing_set
-- One account's rules (sends/pacing.PacingRule); its counters and last send stay.
INSERT INTO sender_pacing (channel, sender_account, daily_cap, min_spacing_seconds, max_spacing_seconds, weekly_cap,
                           time_zone, work_start, work_end, work_days)
VALUES (%(channel)s, %(sender_account)s, %(daily_cap)s, %(min_spacing_seconds)s, %(max_spacing_seconds)s,
        %(weekly_cap)s, %(time_zone)s, %(work_start)s, %(work_end)s, %(work_days)s)
ON CONFLICT (channel, sender_account) DO UPDATE
   SET daily_cap = EXCLUDED.daily_cap, min_spacing_seconds = EXCLUDED.min_spacing_seconds,
       max_spacing_seconds = EXCLUDED.max_spacing_seconds, weekly_cap = EXCLUDED.weekly_cap,
       time_zone = EXCLUDED.time_zone, work_start = EXCLUDED.work_start, work_end = EXCLUDED.work_end,
       work_days = EXCLUDED.work_days,
       -- a shorter spacing takes effect at once: the drawn next_send_at is not kept past the new maximum
       next_send_at = LEAST(sender_pacing.next_send_at, sender_pacing.last_sent_at
                            + make_interval(secs => coalesce(EXCLUDED.max_spacing_seconds, EXCLUDED.min_spacing_seconds))),
       updated_at = now();

-- name: send_pacing_next
-- When the account may send next (NULL: no working day configured); no row at all: now.
SELECT CASE WHEN p.channel IS NULL THEN now() ELSE sender_pacing_next(p) END AS next_at
  FROM (SELECT 1) one
  LEFT JOIN sender_pacing p ON p.channel = %(channel)s AND p.sender_account = %(sender_account)s;

-- name: send_get
SELECT id, idempotency_key, channel, sender_account, recipient, payload, status::text AS status, attempts,
       provider_message_id, last_error, scheduled_for
  FROM send_queue
 WHERE id = %(id)s;

-- name: send_resolve
-- An operator settles a row in review: 'sent' (found at the provider: the ledger records it),
-- 'resend' (not there: pending again, with an outbox record) or 'drop' (failed). The open
-- quarantine row of the send is resolved in the same statement.
WITH decided AS (
    UPDATE send_queue
       SET status = (CASE %(decision)s WHEN 'sent' THEN 'sent' WHEN 'resend' THEN 'pending' ELSE 'failed'
                     END)::send_status,
           provider_message_id = CASE WHEN %(decision)s = 'sent' THEN %(provider_message_id)s
                                      ELSE provider_message_id END,
           sent_at = CASE WHEN %(decision)s = 'sent' THEN now() ELSE sent_at END,
           scheduled_for = CASE WHEN %(decision)s = 'resend' THEN now() ELSE scheduled_for END,
           claim_token = NULL,
           last_error = 'review: ' || %(note)s,
           status_changed_at = now(),
           updated_at = now()
     WHERE id = %(id)s AND status = 'review'
    RETURNING id, channel, sender_account, recipient, payload_hash, attempts, status::text AS status
), ledger AS (
    INSERT INTO sent_messages (send_id, channel, sender_account, recipient, provider_message_id, payload_hash,
                               settled_by, attempt)
    SELECT id, channel, sender_account, recipient, %(provider_message_id)s, payload_hash, 'operator', attempts
      FROM decided WHERE status = 'sent'
    RETURNING id
), outbox AS (
    INSERT INTO send_outbox (send_id) SELECT id FROM decided WHERE status = 'pending'
    RETURNING id
), resolved AS (
    UPDATE quarantine
       SET status = 'resolved', note = %(note)s, handled_by = %(by)s, handled_at = now(), updated_at = now()
     WHERE event_key = 'send:' || %(id)s::text AND status = 'open' AND EXISTS (SELECT 1 FROM decided)
    RETURNING id
)
SELECT status FROM decided;

-- name: send_recipient_repeats
-- Other sends recorded to the same recipient on the same channel within %(window_seconds)s of this
-- one (either side: a reconciliation may settle an earlier send later), whatever their keys: a caller
-- that retries with fresh keys double-messages a person, which no key can stop.
SELECT m.send_id
  FROM sent_messages me
  JOIN sent_messages m ON m.channel = me.channel AND m.recipient = me.recipient AND m.send_id <> me.send_id
 WHERE me.send_id = %(send_id)s
   AND m.sent_at BETWEEN me.sent_at - make_interval(secs => %(window_seconds)s)
                     AND me.sent_at + make_interval(secs => %(window_seconds)s)
 ORDER BY m.send_id
 LIMIT 20;
