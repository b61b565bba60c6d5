-- name: forward_replay
-- The operator's replay of forwards that did not arrive (sends/forward.py): rows of the forward channel
-- that failed (the receiver refused them, or their attempts ran out) or wait in review go back to
-- pending with their attempts reset and an outbox record, in one statement. The webhook-id is the
-- same, so a receiver that did take one drops the copy. Their open quarantine rows are resolved.
WITH replayed AS (
    UPDATE send_queue
       SET status = 'pending',
           attempts = 0,
           reconcile_attempts = 0,
           scheduled_for = now(),
           claim_token = NULL,
           lease_until = NULL,
           last_error = 'replayed: ' || %(note)s,
           status_changed_at = now(),
           updated_at = now()
     WHERE channel = 'forward' AND status IN ('failed', 'review')
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
    RETURNING id
), outbox AS (
    INSERT INTO send_outbox (send_id) SELECT id FROM replayed
    RETURNING id
), resolved AS (
    UPDATE quarantine
       SET status = 'resolved', note = %(note)s, handled_by = %(by)s, handled_at = now(), updated_at = now()
     WHERE event_key IN (SELECT 'send:' || id::text FROM replayed) AND status = 'open'
    RETURNING id
)
SELECT id FROM replayed ORDER BY id;

-- name: forward_list
-- Forwards an operator may replay: failed (refused, or attempts ran out) or in review, oldest first.
SELECT id, status::text, attempts, recipient, last_error, status_changed_at
  FROM send_queue
 WHERE channel = 'forward' AND status IN ('failed', 'review')
 ORDER BY status_changed_at, id
 LIMIT %(limit)s;
