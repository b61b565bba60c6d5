-- Retention (ops/retention.py): each statement takes one batch of rows past its cutoff, oldest first,
-- skipping rows a worker holds (SKIP LOCKED), so no statement waits on a lock or holds many for long.

-- name: retention_event_log
-- The worker's dedup record: only rows no redelivery or replay can still reach (the window's floor).
DELETE FROM event_log
 WHERE id IN (SELECT id FROM event_log
               WHERE last_seen_at < %(cutoff)s
               ORDER BY last_seen_at
               LIMIT %(batch)s
               FOR UPDATE SKIP LOCKED);

-- name: retention_quarantine_redact
-- Settled rows (resolved by a person, or replayed) lose the provider's body; key, reason, notes stay.
UPDATE quarantine SET raw = %(redacted)s, envelope = NULL
 WHERE id IN (SELECT id FROM quarantine
               WHERE status <> 'open' AND updated_at < %(cutoff)s
                 AND (raw <> %(redacted)s OR envelope IS NOT NULL)
               ORDER BY updated_at
               LIMIT %(batch)s
               FOR UPDATE SKIP LOCKED);

-- name: retention_quarantine
-- Settled rows, with the replay lineage that names them (one statement: the foreign key is checked at its end).
WITH doomed AS (
    SELECT id FROM quarantine
     WHERE status <> 'open' AND updated_at < %(cutoff)s
     ORDER BY updated_at
     LIMIT %(batch)s
     FOR UPDATE SKIP LOCKED
), lineage AS (
    DELETE FROM replay_log WHERE quarantine_id IN (SELECT id FROM doomed)
)
DELETE FROM quarantine WHERE id IN (SELECT id FROM doomed);

-- name: retention_replay_log
-- Replays of dead letters (no quarantine row): the same window as quarantine.
DELETE FROM replay_log
 WHERE id IN (SELECT id FROM replay_log
               WHERE quarantine_id IS NULL AND requested_at < %(cutoff)s
               ORDER BY requested_at
               LIMIT %(batch)s
               FOR UPDATE SKIP LOCKED);

-- name: retention_console_actions
-- The console's Idempotency-Key records: a retried click comes within minutes, not weeks.
DELETE FROM console_actions
 WHERE idempotency_key IN (SELECT idempotency_key FROM console_actions
                            WHERE answered_at IS NOT NULL AND requested_at < %(cutoff)s
                            ORDER BY requested_at
                            LIMIT %(batch)s
                            FOR UPDATE SKIP LOCKED);
