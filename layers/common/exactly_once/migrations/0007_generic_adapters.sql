-- Generic adapters (issue 10): LinkedIn messages seen through Unipile webhooks, once each.
-- Standard Webhooks, Stripe, GitHub and Slack events need no table of their own: event_log records them.

CREATE TABLE linkedin_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   text NOT NULL,               -- the Unipile account (our LinkedIn user)
    message_id   text NOT NULL,               -- Unipile's message id
    chat_id      text,
    direction    text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    sender_id    text,                        -- sender.attendee_provider_id
    sender_name  text,
    body         text NOT NULL DEFAULT '',
    sent_at      timestamptz,                 -- the provider's timestamp
    event_key    text NOT NULL,               -- the delivery that recorded it
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT linkedin_messages_account_message_unique UNIQUE (account_id, message_id)
);
CREATE INDEX linkedin_messages_chat_idx ON linkedin_messages (chat_id, sent_at) WHERE chat_id IS NOT NULL;
CREATE INDEX linkedin_messages_inbound_idx ON linkedin_messages (account_id, created_at) WHERE direction = 'inbound';
