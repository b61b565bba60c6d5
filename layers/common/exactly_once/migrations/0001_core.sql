-- Core of the bundle: the event log, quarantine, and the Graph mail -> ticket flow.

CREATE TABLE event_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider      text NOT NULL,
    event_key     text NOT NULL,
    kind          text NOT NULL,
    outcome       text NOT NULL,
    effect_id     text,
    deliveries    integer NOT NULL DEFAULT 1,  -- times a worker saw this event
    payload       jsonb,
    replay_of     text,                        -- lineage of an operator replay
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_log_provider_key_unique UNIQUE (provider, event_key)
);

CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL,
    event_key   text NOT NULL,
    external_id text,            -- the effect's natural key, when known (internetMessageId, wamid, ...)
    reason      text NOT NULL,
    raw         text NOT NULL,   -- the delivery or notification as received
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed', 'resolved')),
    attempts    integer NOT NULL DEFAULT 1,
    note        text,
    handled_by  text,
    handled_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quarantine_provider_key_unique UNIQUE (provider, event_key)
);
CREATE INDEX quarantine_open_idx ON quarantine (created_at) WHERE status = 'open';
CREATE INDEX quarantine_external_id_idx ON quarantine (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE tickets (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_message_id text NOT NULL,   -- RFC 2822 Message-ID (Graph internetMessageId)
    conversation_id     text,
    mailbox             text NOT NULL,
    graph_message_id    text,
    subject             text NOT NULL DEFAULT '',
    sender              text NOT NULL DEFAULT '',
    body_preview        text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tickets_external_message_id_unique UNIQUE (external_message_id)
);
CREATE INDEX tickets_conversation_idx ON tickets (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE TABLE ticket_comments (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id           bigint NOT NULL REFERENCES tickets (id),
    external_message_id text NOT NULL,
    graph_message_id    text,
    sender              text NOT NULL DEFAULT '',
    body_preview        text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticket_comments_external_message_id_unique UNIQUE (external_message_id)
);
CREATE INDEX ticket_comments_ticket_idx ON ticket_comments (ticket_id);
