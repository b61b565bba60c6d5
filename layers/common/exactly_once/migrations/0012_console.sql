-- The operator console (GET /console): indexes for what its read endpoints filter and page on,
-- and one row per action it took, so a double click or a retried POST is one action.

-- Events search: newest first by id (keyset paging), bounded by time, narrowed by key prefix.
CREATE INDEX IF NOT EXISTS event_log_first_seen_idx ON event_log (first_seen_at);
CREATE INDEX IF NOT EXISTS event_log_key_prefix_idx ON event_log (event_key text_pattern_ops);
CREATE INDEX IF NOT EXISTS event_log_provider_id_idx ON event_log (provider, id);
-- Quarantine list of any status, newest first, per provider.
CREATE INDEX IF NOT EXISTS quarantine_provider_created_idx ON quarantine (provider, created_at);
CREATE INDEX IF NOT EXISTS quarantine_created_idx ON quarantine (created_at);
-- Sends awaiting a person: review (unknown has its own index since 0004).
CREATE INDEX IF NOT EXISTS send_queue_review_idx ON send_queue (updated_at) WHERE status = 'review';

-- The console's actions, keyed by the Idempotency-Key its page sends with every POST. The key is
-- claimed before the action runs and answered after it; a second request with the same key gets the
-- stored answer (or 409 while the first is still running), never a second action.
CREATE TABLE IF NOT EXISTS console_actions (
    idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 8 AND 200),
    action          text NOT NULL,          -- quarantine.resolve, quarantine.replay, send.resolve, job.trigger
    target          text NOT NULL,          -- the row or user acted on
    request_hash    text NOT NULL,          -- sha256 of action, target and body: a reused key must match
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    answer          jsonb,                  -- what the action returned; NULL while it runs
    answered_at     timestamptz
);
CREATE INDEX IF NOT EXISTS console_actions_requested_idx ON console_actions (requested_at);
