-- name: naive_schema
-- The check-then-insert baseline (seed 000 before its fix): no lock, no unique constraint.
CREATE TABLE IF NOT EXISTS naive_tickets (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_message_id text NOT NULL,
    subject             text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now()
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
