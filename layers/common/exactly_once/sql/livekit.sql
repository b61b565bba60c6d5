-- name: feedback_claim
-- One statement: claim every 'initiated' feedback row of the room, or say why there is none.
-- Concurrent claimers of a row block on its lock, then re-check status = 'initiated' against the
-- winner's committed version (READ COMMITTED re-evaluation): exactly one of them gets it.
-- A room is its sid; the name is only a fallback for rows written before the sid was known
-- (LiveKit reuses names across sessions, never sids).
WITH claimed AS (
    UPDATE user_feedback
       SET status = 'processing',
           claim_token = gen_random_uuid(),
           lease_until = now() + make_interval(secs => %(lease_seconds)s),
           attempts = attempts + 1,
           updated_at = now()
     WHERE status = 'initiated'
       AND (room_sid = %(room_sid)s OR (room_sid IS NULL AND room_name = %(room_name)s))
    RETURNING id, claim_token, attempts, room_sid, room_name, transcript
)
SELECT 'claimed' AS state, id, claim_token, attempts, room_sid, room_name, transcript FROM claimed
UNION ALL
SELECT f.status::text, f.id, NULL::uuid, f.attempts, f.room_sid, f.room_name, NULL::text
  FROM user_feedback f
 WHERE NOT EXISTS (SELECT 1 FROM claimed)
   AND (f.room_sid = %(room_sid)s OR (f.room_sid IS NULL AND f.room_name = %(room_name)s));

-- name: feedback_complete
-- Fenced: only the holder of the current claim may complete; a stale worker matches nothing.
UPDATE user_feedback
   SET status = 'completed', analysis = %(analysis)s::jsonb, completed_at = now(), lease_until = NULL, updated_at = now()
 WHERE id = %(id)s AND claim_token = %(claim_token)s AND status = 'processing'
RETURNING id;

-- name: feedback_release
-- Fenced failure: back to 'initiated' for a retry (the reaper re-drives it if no retry comes
-- within redrive_seconds), or 'failed' once the attempts are spent.
UPDATE user_feedback
   SET status = (CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'initiated' END)::feedback_status,
       claim_token = NULL,
       lease_until = CASE WHEN attempts >= %(max_attempts)s THEN NULL
                          ELSE now() + make_interval(secs => %(redrive_seconds)s) END,
       last_error = %(error)s,
       updated_at = now()
 WHERE id = %(id)s AND claim_token = %(claim_token)s AND status = 'processing'
RETURNING status::text, attempts;

-- name: feedback_reap
-- Claims whose lease ran out (the worker died or hung) lose their token: back to 'initiated'
-- (or 'failed' once the attempts are spent); reset rows that nobody re-drove in time are
-- picked again. SKIP LOCKED: a row a worker is completing right now is left alone.
UPDATE user_feedback
   SET status = (CASE WHEN status = 'processing' AND attempts >= %(max_attempts)s THEN 'failed'
                      ELSE 'initiated' END)::feedback_status,
       claim_token = NULL,
       lease_until = CASE WHEN status = 'processing' AND attempts >= %(max_attempts)s THEN NULL
                          ELSE now() + make_interval(secs => %(redrive_seconds)s) END,
       last_error = CASE WHEN status = 'processing' THEN 'claim lease expired: the worker died or timed out'
                         ELSE last_error END,
       updated_at = now()
 WHERE id IN (SELECT id FROM user_feedback
               WHERE lease_until < now() AND status IN ('processing', 'initiated')
               ORDER BY lease_until
               LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED)
RETURNING id, status::text, attempts, room_sid, room_name, last_error;

-- name: feedback_event_settle
-- The event log of a room_finished delivery: the terminal outcome wins over earlier duplicates.
INSERT INTO event_log (provider, event_key, kind, outcome, effect_id, payload)
VALUES (%(provider)s, %(event_key)s, %(kind)s, %(outcome)s, %(effect_id)s, %(payload)s)
ON CONFLICT (provider, event_key) DO UPDATE
   SET deliveries = event_log.deliveries + 1,
       last_seen_at = now(),
       outcome = CASE WHEN EXCLUDED.outcome IN ('completed', 'failed') THEN EXCLUDED.outcome
                      ELSE event_log.outcome END,
       effect_id = COALESCE(EXCLUDED.effect_id, event_log.effect_id)
RETURNING deliveries;

-- name: room_finished_record
-- The room is over (the first report wins; a re-delivery or a re-drive changes nothing).
INSERT INTO livekit_rooms_finished (room_sid, room_name, event_key)
VALUES (%(room_sid)s, %(room_name)s, %(event_key)s)
ON CONFLICT (room_sid) DO NOTHING;

-- name: feedback_late_rows
-- Rows the app created after their room finished: 'initiated', never claimed nor leased, for a room
-- in livekit_rooms_finished. Each gets a re-drive time (lease_until) in this statement, so the next
-- pass skips it; if the re-drive is lost, feedback_reap picks the row again after that time.
-- SKIP LOCKED: a row a worker is claiming right now is left to it. Only rooms finished within
-- %(horizon_seconds)s: an older room's late row is an application bug the gauge shows, not work.
UPDATE user_feedback f
   SET lease_until = now() + make_interval(secs => %(redrive_seconds)s), updated_at = now()
 WHERE f.id IN (SELECT u.id
                  FROM livekit_rooms_finished r
                  JOIN user_feedback u ON u.room_sid = r.room_sid
                 WHERE r.finished_at > now() - make_interval(secs => %(horizon_seconds)s)
                   AND u.status = 'initiated' AND u.lease_until IS NULL AND u.claim_token IS NULL
                 ORDER BY r.finished_at
                 LIMIT %(limit)s
                 FOR UPDATE OF u SKIP LOCKED)
RETURNING f.id, f.status::text, f.attempts, f.room_sid, f.room_name, f.last_error;

-- name: feedback_late_gauge
-- Feedback rows still 'initiated' %(after_seconds)s after their room finished: the late-row re-drive
-- (or the worker behind it) is not keeping up, or the row names its room only by a reused name.
SELECT count(*) FROM user_feedback f
 WHERE f.status = 'initiated'
   AND EXISTS (SELECT 1 FROM livekit_rooms_finished r
                WHERE (r.room_sid = f.room_sid OR (f.room_sid IS NULL AND r.room_name = f.room_name
                                                   AND f.created_at <= r.finished_at))
                  AND r.finished_at < now() - make_interval(secs => %(after_seconds)s));
