-- Retention (ops/retention.py): the indexes its batched deletes walk, so each batch reads only the rows it
-- removes. event_log by last sighting (a redelivery moves it forward); settled quarantine rows by their
-- last change; replay lineage by the quarantine row it names (deleted with it) and, for DLQ replays that
-- name none, by age.
CREATE INDEX IF NOT EXISTS event_log_last_seen_idx ON event_log (last_seen_at);
CREATE INDEX IF NOT EXISTS quarantine_settled_idx ON quarantine (updated_at) WHERE status <> 'open';
CREATE INDEX IF NOT EXISTS replay_log_quarantine_idx ON replay_log (quarantine_id);
CREATE INDEX IF NOT EXISTS replay_log_unlinked_idx ON replay_log (requested_at) WHERE quarantine_id IS NULL;
