-- Microsoft Graph: the mailboxes to watch (configuration) and the subscriptions that watch them (state).
--
-- graph_mailboxes is what an operator edits (`exactly-once graph watch|unwatch`) or the template's
-- GraphMailboxes parameter fills; it also holds the manager's claim on a mailbox (one manager run or
-- one lifecycle action at a time), its backoff after a failure, and the delta resync's cursor.
-- graph_subscriptions keeps every subscription the bundle ever made (a late notification for a
-- replaced one is still ours); at most one per mailbox is active.
CREATE TABLE graph_mailboxes (
    mailbox          text PRIMARY KEY CHECK (mailbox <> '' AND mailbox = lower(mailbox)),
    folder           text NOT NULL DEFAULT 'inbox' CHECK (folder <> ''),
    source           text NOT NULL DEFAULT 'operator' CHECK (source IN ('parameter', 'operator')),
    watched          boolean NOT NULL DEFAULT true,
    user_id          text,                      -- Graph's id of the mailbox's user (notifications name it)
    added_at         timestamptz NOT NULL DEFAULT now(),
    claim_token      uuid,
    claimed_until    timestamptz,
    failures         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz,
    resync_token     uuid,                      -- the resync's own claim: a long resync never blocks a renewal
    resync_until     timestamptz,
    delta_link       text,                      -- where the next resync starts (Graph's @odata.deltaLink)
    page_link        text,                      -- the next page of a resync in progress (@odata.nextLink)
    resync_wanted_at timestamptz,               -- a lifecycle event or an operator asked for a resync
    resynced_at      timestamptz,               -- the last resync that reached a delta link
    resynced_mails   bigint NOT NULL DEFAULT 0,
    resync_error     text
);

CREATE TABLE graph_subscriptions (
    subscription_id text PRIMARY KEY,
    mailbox         text NOT NULL,
    resource        text NOT NULL,
    client_state_id text NOT NULL,              -- a fingerprint of the clientState it was made with, never the secret
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'removed', 'deleted')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    renewed_at      timestamptz,
    retired_at      timestamptz
);

-- The rule the manager's claim keeps: one live subscription per mailbox.
CREATE UNIQUE INDEX graph_subscriptions_one_active ON graph_subscriptions (mailbox) WHERE status = 'active';
