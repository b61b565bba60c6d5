-- name: seed_lock
-- Seed 000's path: a SESSION advisory lock on the message id, held across separate statements.
SELECT pg_advisory_lock(hashtext(%(message_id)s));

-- name: seed_check_tickets
SELECT id FROM tickets WHERE external_message_id = %(message_id)s;

-- name: seed_check_comments
SELECT id FROM ticket_comments WHERE external_message_id = %(message_id)s;

-- name: seed_check_quarantine
SELECT id FROM quarantine WHERE external_id = %(message_id)s AND provider = 'graph' AND status = 'open';

-- name: seed_insert
INSERT INTO tickets (external_message_id, conversation_id, mailbox, graph_message_id, subject, sender, body_preview)
VALUES (%(message_id)s, %(conversation_id)s, %(mailbox)s, %(graph_message_id)s, %(subject)s, %(sender)s, %(preview)s);

-- name: seed_unlock
SELECT pg_advisory_unlock(hashtext(%(message_id)s));

-- name: ceiling_table
CREATE TABLE IF NOT EXISTS bench_single_insert (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k integer, v text);
