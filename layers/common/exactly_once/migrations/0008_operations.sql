-- Operations: what an operator needs to replay a quarantined event and keep its lineage.
--
-- quarantine.envelope is the event exactly as it travelled on the events queue (provider,
-- key, group, kind, payload), so a replay re-sends the same event through the same code path
-- instead of rebuilding it from the raw text. Rows written before this migration, or by a flow
-- that quarantines something that is not a queued event, have none: the CLI says so.
-- text, not jsonb: the envelope is JSON text with control characters escaped, and jsonb refuses
-- an escaped NUL (\u0000) that a hostile or broken provider payload can carry.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS envelope text;

-- One row per replay an operator asked for: who, when, why, what the event had come to
-- before, and what the worker made of it (filled in by the worker when it settles the replay).
CREATE TABLE IF NOT EXISTS replay_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quarantine_id    bigint REFERENCES quarantine (id),
    provider         text NOT NULL,
    event_key        text NOT NULL,   -- the key the operator replayed (the quarantined or dead-lettered one)
    replayed_key     text,            -- the key the replay travelled under, when a corrected payload changed it
    previous_outcome text,            -- event_log.outcome when the replay was asked for
    requested_by     text NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    note             text,
    queue_message_id text,            -- the SQS message id of the re-sent event
    outcome          text,            -- what the worker returned for the replay
    settled_at       timestamptz
);
CREATE INDEX IF NOT EXISTS replay_log_event_idx ON replay_log (provider, event_key);
CREATE INDEX IF NOT EXISTS replay_log_quarantine_idx ON replay_log (quarantine_id);
