-- LiveKit: a room's finished state outlives its room_finished event.
--
-- An app may create the feedback row after LiveKit reported the room finished (the app writes it
-- when the call's summary screen opens, or its insert lost a race with the webhook). The worker
-- that handled room_finished found no row then; this table remembers that the room is over, so the
-- reaper hands a row that appears later to the same claim path (a re-drive), once.
-- Keyed by the room sid: LiveKit reuses room names across sessions, never sids.
CREATE TABLE IF NOT EXISTS livekit_rooms_finished (
    room_sid     text PRIMARY KEY,
    room_name    text,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    event_key    text                                 -- the room_finished event that told us
);
CREATE INDEX IF NOT EXISTS livekit_rooms_finished_at_idx ON livekit_rooms_finished (finished_at);
-- The late-row scan joins initiated rows without a lease to finished rooms.
CREATE INDEX IF NOT EXISTS user_feedback_unleased_idx ON user_feedback (room_sid)
    WHERE lease_until IS NULL AND claim_token IS NULL;

-- Sends: "the same recipient messaged more than once within an hour" (the LinkedIn sends incident)
-- is read from the ledger at every completion: by channel and recipient, in time.
CREATE INDEX IF NOT EXISTS sent_messages_recipient_idx ON sent_messages (channel, recipient, sent_at);
