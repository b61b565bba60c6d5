-- name: mail_lock
-- Serialise one mail thread, then one message: a reply cannot race its ticket.
-- Always thread first, then message, so two transactions never wait on each other in a cycle.
SELECT pg_advisory_xact_lock(1, hashtext(%(thread)s)), pg_advisory_xact_lock(2, hashtext(%(message_id)s));

-- name: mail_apply
-- One statement, run after mail_lock so its snapshot sees every earlier holder's commit:
-- the duplicate check across tickets, comments and quarantine, the parent lookup of a reply,
-- and the guarded insert of a ticket or a comment.
WITH existing AS (
    (SELECT 'ticket' AS kind, id FROM tickets WHERE external_message_id = %(message_id)s)
    UNION ALL
    (SELECT 'comment', id FROM ticket_comments WHERE external_message_id = %(message_id)s)
    UNION ALL
    (SELECT 'quarantine', id FROM quarantine WHERE external_id = %(message_id)s AND provider = 'graph' AND status = 'open')
    LIMIT 1
), parent AS (
    (SELECT t.id FROM tickets t
      WHERE NOT EXISTS (SELECT 1 FROM existing)
        AND (t.external_message_id = ANY(%(references)s::text[])
             OR (%(conversation_id)s::text IS NOT NULL AND t.conversation_id = %(conversation_id)s::text))
      ORDER BY t.id LIMIT 1)
    UNION ALL
    (SELECT c.ticket_id FROM ticket_comments c
      WHERE NOT EXISTS (SELECT 1 FROM existing) AND c.external_message_id = ANY(%(references)s::text[])
      LIMIT 1)
    LIMIT 1
), new_comment AS (
    INSERT INTO ticket_comments (ticket_id, external_message_id, graph_message_id, sender, body_preview)
    SELECT id, %(message_id)s, %(graph_message_id)s, %(sender)s, %(preview)s FROM parent
    ON CONFLICT (external_message_id) DO NOTHING
    RETURNING id
), new_ticket AS (
    INSERT INTO tickets (external_message_id, conversation_id, mailbox, graph_message_id, subject, sender, body_preview)
    SELECT %(message_id)s, %(conversation_id)s, %(mailbox)s, %(graph_message_id)s, %(subject)s, %(sender)s, %(preview)s
     WHERE NOT EXISTS (SELECT 1 FROM existing) AND NOT EXISTS (SELECT 1 FROM parent)
    ON CONFLICT (external_message_id) DO NOTHING
    RETURNING id
)
SELECT CASE
         WHEN EXISTS (SELECT 1 FROM existing) THEN 'duplicate'
         WHEN EXISTS (SELECT 1 FROM new_ticket) THEN 'ticket'
         WHEN EXISTS (SELECT 1 FROM new_comment) THEN 'comment'
         ELSE 'conflict'
       END AS outcome,
       COALESCE((SELECT kind FROM existing), '') AS existing_kind,
       COALESCE((SELECT id FROM existing), (SELECT id FROM new_ticket), (SELECT id FROM new_comment)) AS row_id;

-- name: mail_find
-- After a unique violation: the row that won, if any.
(SELECT 'ticket' AS kind, id FROM tickets WHERE external_message_id = %(message_id)s)
UNION ALL
(SELECT 'comment', id FROM ticket_comments WHERE external_message_id = %(message_id)s)
LIMIT 1;
