-- The demo's own SQL: the check-then-insert baselines (devstack/naive.py, make demo --naive),
-- their effect counts, and the Unipile storm's count of linkedin_messages.

-- name: naive_schema
-- The check-then-insert baselines (the Graph mail incident's code before its fix): no lock, no unique constraint.
CREATE TABLE IF NOT EXISTS naive_tickets (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_message_id text NOT NULL,
    subject             text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now()
);
-- What the other twins have done, per flow and key: a recorded webhook event (Standard Webhooks,
-- Stripe, GitHub, Slack), a LinkedIn message (Unipile), a message sent (POST /local/naive/sends).
CREATE TABLE IF NOT EXISTS naive_records (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow       text NOT NULL,
    effect_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- name: naive_exists
SELECT 1 FROM naive_tickets WHERE external_message_id = %(message_id)s LIMIT 1;

-- name: naive_insert
INSERT INTO naive_tickets (external_message_id, subject) VALUES (%(message_id)s, %(subject)s);

-- name: naive_counts
SELECT external_message_id, count(*)
  FROM naive_tickets
 WHERE external_message_id = ANY(%(ids)s::text[])
 GROUP BY external_message_id;

-- name: naive_record_exists
SELECT 1 FROM naive_records WHERE flow = %(flow)s AND effect_key = %(key)s LIMIT 1;

-- name: naive_record_insert
INSERT INTO naive_records (flow, effect_key) VALUES (%(flow)s, %(key)s);

-- name: naive_record_counts
SELECT effect_key, count(*)
  FROM naive_records
 WHERE flow = %(flow)s AND effect_key = ANY(%(keys)s::text[])
 GROUP BY effect_key;

-- name: storm_linkedin_messages
-- LinkedIn messages per message of the Unipile storm: must be exactly 1 each.
SELECT message_id, count(*)
  FROM linkedin_messages
 WHERE account_id = %(account)s AND message_id = ANY(%(ids)s::text[])
 GROUP BY message_id;
