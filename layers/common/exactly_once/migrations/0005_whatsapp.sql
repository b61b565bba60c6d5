-- WhatsApp Cloud API: inbound messages (stored once per wamid) and the delivery status of
-- outbound messages, which only ever moves forward.

CREATE TABLE whatsapp_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wamid           text NOT NULL,            -- Meta's message id: the same on every re-delivery
    phone_number_id text NOT NULL,            -- the business number that received it
    waba_id         text,
    wa_id           text NOT NULL,            -- the customer (messages[].from)
    contact_name    text,                     -- contacts[].profile.name
    type            text NOT NULL,            -- text, image, interactive, ... or a type we do not know yet
    text            text,                     -- body, caption or button title, when the type has one
    context_wamid   text,                     -- the message this one replies to
    sent_at         timestamptz,              -- messages[].timestamp
    raw             jsonb NOT NULL,           -- the message (and its contact) as received
    received_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT whatsapp_messages_wamid_unique UNIQUE (wamid)
);
CREATE INDEX whatsapp_messages_conversation_idx ON whatsapp_messages (phone_number_id, wa_id, received_at);

-- sent < failed < delivered < read < played. A failure is news only about a message known
-- to be sent: once delivery is confirmed a late "failed" cannot be true, and a "delivered"
-- after "failed" proves delivery. The errors of a failure stay on the row either way.
CREATE FUNCTION delivery_status_rank(status text) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE status
    WHEN 'sent' THEN 10
    WHEN 'failed' THEN 15
    WHEN 'delivered' THEN 20
    WHEN 'read' THEN 30
    WHEN 'played' THEN 40
END;

-- One row per outbound provider message (send_queue.provider_message_id joins it). A
-- status may arrive before the sender recorded the id, so this row does not depend on it.
CREATE TABLE message_delivery (
    provider_message_id text PRIMARY KEY,
    channel             text NOT NULL DEFAULT 'whatsapp',
    phone_number_id     text,
    recipient_id        text,
    status              text NOT NULL,
    rank                smallint NOT NULL,
    status_at           timestamptz,          -- the provider's timestamp of the current status
    errors              jsonb,                -- statuses[].errors of a failure, kept afterwards
    conversation        jsonb,
    pricing             jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_delivery_status_known CHECK (status IN ('sent', 'failed', 'delivered', 'read', 'played')),
    CONSTRAINT message_delivery_rank_matches CHECK (rank = delivery_status_rank(status))
);
