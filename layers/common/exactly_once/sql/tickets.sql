-- name: mail_apply
-- The whole effect in one call (migrations/0009_apply_mail_function.sql): the thread and message
-- advisory xact locks, then the duplicate check across tickets, comments and quarantine, the
-- parent lookup of a reply, the guarded insert of a ticket or a comment, and the event log row.
SELECT outcome, existing_kind, row_id
  FROM eo_apply_mail(%(thread)s, %(message_id)s, %(references)s::text[], %(conversation_id)s, %(mailbox)s,
                     %(graph_message_id)s, %(subject)s, %(sender)s, %(preview)s,
                     %(event_key)s, %(kind)s, %(replay_of)s);

-- name: mail_apply_batch
-- Several mails in one call and one commit (migrations/0010_apply_mails_batch.sql): every lock
-- first, in one global order, then each mail as mail_apply does it; one row per mail, by ord.
SELECT ord, outcome, existing_kind, row_id FROM eo_apply_mails(%(mails)s);

-- name: mail_find
-- After a unique violation: the row that won, if any.
(SELECT 'ticket' AS kind, id FROM tickets WHERE external_message_id = %(message_id)s)
UNION ALL
(SELECT 'comment', id FROM ticket_comments WHERE external_message_id = %(message_id)s)
LIMIT 1;
