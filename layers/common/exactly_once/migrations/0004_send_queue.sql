-- The outbound send queue (seed 003): one row per message to send, claimed atomically,
-- completed under a fence, and recorded in a ledger whose unique constraints are the last
-- line of defence against a double send.

CREATE TYPE send_status AS ENUM ('pending', 'processing', 'sent', 'failed', 'unknown', 'review');
CREATE TYPE send_policy AS ENUM ('at_most_once', 'at_least_once');

CREATE TABLE send_queue (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key     text NOT NULL,
    channel             text NOT NULL CHECK (channel IN ('whatsapp', 'unipile')),
    sender_account      text NOT NULL,   -- WhatsApp phone_number_id / Unipile account_id: FIFO group, pacing unit
    recipient           text NOT NULL,   -- WhatsApp wa_id / Unipile chat_id (or attendee id for a new chat)
    payload             jsonb NOT NULL,
    payload_hash        text NOT NULL,   -- sha256 of channel, sender, recipient and payload: a reused key must match
    policy              send_policy NOT NULL DEFAULT 'at_most_once',
    status              send_status NOT NULL DEFAULT 'pending',
    scheduled_for       timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 5,
    claim_token         uuid,            -- the current claim; every completion is fenced on it
    lease_until         timestamptz,     -- a processing row past this is reaped to unknown
    call_started_at     timestamptz,     -- when the provider call of the current claim began (reconciliation window)
    reconcile_attempts  integer NOT NULL DEFAULT 0,
    status_changed_at   timestamptz NOT NULL DEFAULT now(),  -- "stuck for 5 minutes" is measured from it
    last_error          text,
    provider_message_id text,            -- the wamid / Unipile message id once sent
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    CONSTRAINT send_queue_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT send_queue_processing_has_claim
        CHECK (status <> 'processing' OR (claim_token IS NOT NULL AND lease_until IS NOT NULL)),
    CONSTRAINT send_queue_sent_has_provider_id CHECK (status <> 'sent' OR provider_message_id IS NOT NULL)
);
CREATE INDEX send_queue_due_idx ON send_queue (scheduled_for) WHERE status = 'pending';
CREATE INDEX send_queue_processing_idx ON send_queue (lease_until) WHERE status = 'processing';
CREATE INDEX send_queue_unknown_idx ON send_queue (updated_at) WHERE status = 'unknown';

-- Relay records, written in the transaction that makes a row pending (enqueue, reschedule,
-- reconciliation back to pending). The after-commit relay marks them; the sweeper relays the rest.
CREATE TABLE send_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    send_id      bigint NOT NULL REFERENCES send_queue (id) ON DELETE CASCADE,
    available_at timestamptz NOT NULL DEFAULT now(),  -- SQS FIFO has no per-message delay: the sweeper waits
    relayed_at   timestamptz,
    relays       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX send_outbox_unrelayed_idx ON send_outbox (available_at) WHERE relayed_at IS NULL;
CREATE INDEX send_outbox_send_idx ON send_outbox (send_id);

-- The ledger: one row per queue row, one row per provider message id. A second send of the
-- same row cannot be recorded, and one provider message cannot settle two rows.
CREATE TABLE sent_messages (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    send_id             bigint NOT NULL REFERENCES send_queue (id) ON DELETE CASCADE,
    channel             text NOT NULL,
    sender_account      text NOT NULL,
    recipient           text NOT NULL,
    provider_message_id text NOT NULL,
    payload_hash        text NOT NULL,
    settled_by          text NOT NULL CHECK (settled_by IN ('worker', 'reconciliation', 'operator')),
    attempt             integer NOT NULL,
    sent_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sent_messages_send_unique UNIQUE (send_id),
    CONSTRAINT sent_messages_provider_id_unique UNIQUE (channel, provider_message_id)
);

-- Pacing per sender account, enforced by the claim statement itself (not in a worker's memory):
-- a claim takes one unit of the daily cap and moves last_claimed_at, or it does not happen.
CREATE TABLE sender_pacing (
    channel             text NOT NULL,
    sender_account      text NOT NULL,
    daily_cap           integer NOT NULL CHECK (daily_cap >= 0),
    min_spacing_seconds double precision NOT NULL DEFAULT 0 CHECK (min_spacing_seconds >= 0),
    day                 date NOT NULL DEFAULT current_date,
    sent_today          integer NOT NULL DEFAULT 0,  -- claims taken today (a claim is a possible send)
    last_sent_at        timestamptz,                 -- the last claim: the spacing is measured from it
    paused_until        timestamptz,                 -- a provider warning or rate limit pauses the account
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, sender_account)
);
