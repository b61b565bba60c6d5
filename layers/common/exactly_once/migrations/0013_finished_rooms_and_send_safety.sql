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

-- Pacing that LinkedIn tolerates (the LinkedIn sends incident): besides the daily cap and the minimum
-- spacing, a weekly cap, a spacing drawn at random between a minimum and a maximum (jitter), and
-- working hours on working days in the sender's own time zone. Every rule is per sender account;
-- new rows take the channel's defaults (sends/pacing.py). The counters are per local day and week.
ALTER TABLE sender_pacing
    ADD COLUMN IF NOT EXISTS weekly_cap          integer CHECK (weekly_cap IS NULL OR weekly_cap >= 0),
    ADD COLUMN IF NOT EXISTS week                date,                -- the local Monday sent_this_week counts for
    ADD COLUMN IF NOT EXISTS sent_this_week      integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_spacing_seconds double precision CHECK (max_spacing_seconds IS NULL OR max_spacing_seconds >= 0),
    ADD COLUMN IF NOT EXISTS next_send_at        timestamptz,         -- the last claim + a spacing drawn in [min, max]
    ADD COLUMN IF NOT EXISTS time_zone           text NOT NULL DEFAULT 'UTC',
    ADD COLUMN IF NOT EXISTS work_start          time,                -- NULL: any hour
    ADD COLUMN IF NOT EXISTS work_end            time,
    ADD COLUMN IF NOT EXISTS work_days           smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}';  -- ISO: 1 = Monday

-- When the account may send next: now() if it may send now; NULL if it never may (no working day).
-- The one place the rules are read: the claim, the "why not" read and the deferral all call it.
CREATE OR REPLACE FUNCTION sender_pacing_next(p sender_pacing) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_now timestamp := now() AT TIME ZONE p.time_zone;
    week_start date := date_trunc('week', local_now)::date;
    at timestamptz := GREATEST(now(), p.paused_until, p.next_send_at,
                               p.last_sent_at + make_interval(secs => p.min_spacing_seconds));
    local_at timestamp;
    d date;
BEGIN
    IF (CASE WHEN p.day = local_now::date THEN p.sent_today ELSE 0 END) >= p.daily_cap THEN
        at := GREATEST(at, (local_now::date + 1)::timestamp AT TIME ZONE p.time_zone);
    END IF;
    IF p.weekly_cap IS NOT NULL
       AND (CASE WHEN p.week = week_start THEN p.sent_this_week ELSE 0 END) >= p.weekly_cap THEN
        at := GREATEST(at, (week_start + 7)::timestamp AT TIME ZONE p.time_zone);
    END IF;
    IF p.work_start IS NULL OR p.work_end IS NULL THEN
        RETURN at;
    END IF;
    -- The first moment at or after `at` inside a working window [work_start, work_end) of a working day.
    local_at := at AT TIME ZONE p.time_zone;
    FOR i IN 0..7 LOOP
        d := local_at::date + i;
        CONTINUE WHEN NOT (extract(isodow FROM d)::smallint = ANY (p.work_days));
        IF i = 0 AND local_at::time >= p.work_end THEN
            CONTINUE;
        END IF;
        IF i = 0 AND local_at::time >= p.work_start THEN
            RETURN at;
        END IF;
        RETURN (d + p.work_start) AT TIME ZONE p.time_zone;
    END LOOP;
    RETURN NULL;
END
$$;

-- The claim's pacing step: take one send for the account if its rules allow one now, creating its row
-- with the channel's defaults first. The row lock (FOR UPDATE) serialises the account's claimers.
CREATE OR REPLACE FUNCTION sender_pacing_take(p_channel text, p_account text, p_defaults jsonb) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p sender_pacing;
    local_now timestamp;
BEGIN
    INSERT INTO sender_pacing (channel, sender_account, daily_cap, min_spacing_seconds, max_spacing_seconds,
                               weekly_cap, time_zone, work_start, work_end, work_days)
    VALUES (p_channel, p_account, (p_defaults->>'daily_cap')::integer,
            (p_defaults->>'min_spacing_seconds')::double precision,
            (p_defaults->>'max_spacing_seconds')::double precision,
            (p_defaults->>'weekly_cap')::integer, coalesce(p_defaults->>'time_zone', 'UTC'),
            (p_defaults->>'work_start')::time, (p_defaults->>'work_end')::time,
            CASE WHEN jsonb_typeof(p_defaults->'work_days') = 'array'
                 THEN ARRAY(SELECT jsonb_array_elements_text(p_defaults->'work_days'))::smallint[]
                 ELSE '{1,2,3,4,5,6,7}' END)
    ON CONFLICT (channel, sender_account) DO NOTHING;
    SELECT * INTO p FROM sender_pacing WHERE channel = p_channel AND sender_account = p_account FOR UPDATE;
    IF sender_pacing_next(p) IS NULL OR sender_pacing_next(p) > now() THEN
        RETURN false;
    END IF;
    local_now := now() AT TIME ZONE p.time_zone;
    UPDATE sender_pacing
       SET sent_today = CASE WHEN day = local_now::date THEN sent_today + 1 ELSE 1 END,
           day = local_now::date,
           sent_this_week = CASE WHEN week = date_trunc('week', local_now)::date THEN sent_this_week + 1 ELSE 1 END,
           week = date_trunc('week', local_now)::date,
           last_sent_at = now(),
           next_send_at = now() + make_interval(secs => min_spacing_seconds
                          + random() * GREATEST(coalesce(max_spacing_seconds, min_spacing_seconds) - min_spacing_seconds, 0)),
           updated_at = now()
     WHERE channel = p_channel AND sender_account = p_account;
    RETURN true;
END
$$;
