-- name: event_log_seen
-- A redelivered event the worker already settled: count it, return its outcome.
UPDATE event_log
   SET deliveries = deliveries + 1, last_seen_at = now()
 WHERE provider = %(provider)s AND event_key = %(event_key)s
RETURNING outcome, effect_id, deliveries;

-- name: event_log_record
INSERT INTO event_log (provider, event_key, kind, outcome, effect_id, payload, replay_of)
VALUES (%(provider)s, %(event_key)s, %(kind)s, %(outcome)s, %(effect_id)s, %(payload)s, %(replay_of)s)
ON CONFLICT (provider, event_key) DO UPDATE
   SET deliveries = event_log.deliveries + 1, last_seen_at = now(),
       -- An operator replay (replay_of set) settles the event anew: its outcome replaces the old one,
       -- whose trace stays in replay_log. Ordinary redeliveries only count.
       outcome = CASE WHEN EXCLUDED.replay_of IS NULL THEN event_log.outcome ELSE EXCLUDED.outcome END,
       effect_id = CASE WHEN EXCLUDED.replay_of IS NULL THEN event_log.effect_id ELSE EXCLUDED.effect_id END,
       replay_of = COALESCE(EXCLUDED.replay_of, event_log.replay_of)
RETURNING id, deliveries, outcome;

-- name: quarantine_put
INSERT INTO quarantine (provider, event_key, external_id, reason, raw, envelope)
VALUES (%(provider)s, %(event_key)s, %(external_id)s, %(reason)s, %(raw)s, %(envelope)s)
ON CONFLICT (provider, event_key) DO UPDATE
   SET attempts = quarantine.attempts + 1, reason = EXCLUDED.reason, updated_at = now(),
       envelope = COALESCE(EXCLUDED.envelope, quarantine.envelope),
       -- A replay that fails again is open again: it needs an operator once more.
       status = CASE WHEN quarantine.status = 'replayed' THEN 'open' ELSE quarantine.status END
RETURNING id, (xmax = 0) AS inserted;
