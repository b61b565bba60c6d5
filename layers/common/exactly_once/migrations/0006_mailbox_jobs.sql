-- Per-user mailbox jobs (seed 004): at most one pending job per user, enforced by the store.
--
-- A job is 'scheduled' once recorded (the row is the outbox: it is on no queue yet),
-- 'queued' once the JobsQueue accepted it, 'running' while a worker holds the claim
-- (claim_token + lease_until), then 'succeeded', 'failed' or 'expired' (its lease ran out).
-- The rule is EXACTLY ONE pending job per user: no "one running plus one queued".

CREATE TABLE mailbox_configs (
    user_id              text PRIMARY KEY,
    interval_minutes     integer NOT NULL DEFAULT 15 CHECK (interval_minutes BETWEEN 1 AND 10080),
    enabled              boolean NOT NULL DEFAULT true,
    imap_host            text NOT NULL,
    imap_port            integer NOT NULL DEFAULT 993 CHECK (imap_port BETWEEN 1 AND 65535),
    imap_username        text NOT NULL,
    imap_ssl             boolean NOT NULL DEFAULT true,
    password_secret      text NOT NULL,   -- the NAME of the secret (secrets.get_secret), never the password
    mailbox_folder       text NOT NULL DEFAULT 'INBOX',
    last_check_time      timestamptz,     -- only moves forward (GREATEST), fenced on the job's claim
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mailbox_jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id            text NOT NULL,
    user_id           text NOT NULL REFERENCES mailbox_configs (user_id),
    slot              timestamptz NOT NULL,          -- the schedule slot the job id was derived from
    origin            text NOT NULL CHECK (origin IN ('schedule', 'trigger')),
    status            text NOT NULL DEFAULT 'scheduled'
                      CHECK (status IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'expired')),
    lease_until       timestamptz,                   -- queued: must be claimed by; running: the claim's lease
    claim_token       uuid,
    attempts          integer NOT NULL DEFAULT 0,
    mails_seen        integer NOT NULL DEFAULT 0,
    mails_processed   integer NOT NULL DEFAULT 0,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT mailbox_jobs_job_id_unique UNIQUE (job_id),
    CONSTRAINT mailbox_jobs_running_has_claim CHECK (status <> 'running' OR (claim_token IS NOT NULL AND lease_until IS NOT NULL))
);
-- The guarantee: a second pending job for a user is a unique violation, whoever inserts it.
CREATE UNIQUE INDEX mailbox_jobs_one_pending_per_user
    ON mailbox_jobs (user_id) WHERE status IN ('scheduled', 'queued', 'running');
CREATE INDEX mailbox_jobs_user_slot_idx ON mailbox_jobs (user_id, slot DESC);
CREATE INDEX mailbox_jobs_lease_idx ON mailbox_jobs (lease_until) WHERE status IN ('queued', 'running');
CREATE INDEX mailbox_jobs_scheduled_idx ON mailbox_jobs (created_at) WHERE status = 'scheduled';

-- Each mail is processed once per user, keyed by its RFC 2822 Message-ID, however often a job is retried.
CREATE TABLE processed_mails (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL REFERENCES mailbox_configs (user_id),
    message_id    text NOT NULL,
    job_id        text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    sender        text NOT NULL DEFAULT '',
    received_at   timestamptz,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processed_mails_user_message_unique UNIQUE (user_id, message_id)
);
