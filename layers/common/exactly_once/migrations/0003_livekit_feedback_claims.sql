-- The seed's fix, done so it runs on a live database with rows in it:
-- * ADD VALUE IF NOT EXISTS: re-runnable (the seed's bare ADD VALUE fails the second time).
-- * Nothing below uses the new values: Postgres refuses a value added in the same
--   transaction ("unsafe use of new value"), and the migration runner gives each file one.
--   So the lease index is partial on lease_until, not on status = 'processing'.
-- * ADD COLUMN with a constant default is a catalogue change (no table rewrite, PG 11+);
--   lock_timeout keeps the ACCESS EXCLUSIVE lock from queueing behind long transactions
--   (and every query behind it): the deploy fails fast and is retried instead.
SET LOCAL lock_timeout = '5s';

ALTER TYPE feedback_status ADD VALUE IF NOT EXISTS 'processing' BEFORE 'dropped';
ALTER TYPE feedback_status ADD VALUE IF NOT EXISTS 'failed';

ALTER TABLE user_feedback
    ADD COLUMN IF NOT EXISTS claim_token  uuid,          -- the current claim: completions are fenced on it
    ADD COLUMN IF NOT EXISTS lease_until  timestamptz,   -- claim expiry, or when the reaper re-drives a reset row
    ADD COLUMN IF NOT EXISTS attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error   text,
    ADD COLUMN IF NOT EXISTS completed_at timestamptz;

-- The reaper's scan: only rows with a live lease or a pending re-drive carry lease_until.
CREATE INDEX IF NOT EXISTS user_feedback_lease_idx ON user_feedback (lease_until) WHERE lease_until IS NOT NULL;
