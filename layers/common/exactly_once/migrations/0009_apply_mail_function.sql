-- The mail -> ticket effect as one server-side call: one round trip per effect, in autocommit.
--
-- Inside a plpgsql function every statement takes a fresh snapshot (READ COMMITTED), so the
-- check-and-insert below runs after the advisory locks with a snapshot that sees every earlier
-- lock holder's commit; the locks are released when the caller's implicit transaction commits.
-- Locks: the mail thread first, then the message, always in that order (no deadlock cycle), so
-- a reply cannot race the ticket it belongs to.
-- The thread lookup reads (conversation_id, id) in order: the first ticket of a conversation.
CREATE INDEX IF NOT EXISTS tickets_conversation_first_idx ON tickets (conversation_id, id)
    WHERE conversation_id IS NOT NULL;
DROP INDEX IF EXISTS tickets_conversation_idx;

CREATE OR REPLACE FUNCTION eo_apply_mail(
    p_thread text, p_message_id text, p_references text[], p_conversation_id text, p_mailbox text,
    p_graph_message_id text, p_subject text, p_sender text, p_preview text,
    p_event_key text, p_kind text, p_replay_of text
) RETURNS TABLE (outcome text, existing_kind text, row_id bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(1, hashtext(p_thread));
    PERFORM pg_advisory_xact_lock(2, hashtext(p_message_id));
    RETURN QUERY
        WITH existing AS (
            (SELECT 'ticket' AS kind, id FROM tickets WHERE external_message_id = p_message_id)
            UNION ALL
            (SELECT 'comment', id FROM ticket_comments WHERE external_message_id = p_message_id)
            UNION ALL
            (SELECT 'quarantine', id FROM quarantine WHERE external_id = p_message_id AND provider = 'graph' AND status = 'open')
            LIMIT 1
        ), parent AS (
            -- One index-friendly branch per way a reply names its thread: an OR of them makes the
            -- cached generic plan walk the whole primary key in order whenever nothing matches.
            (SELECT t.id FROM tickets t
              WHERE NOT EXISTS (SELECT 1 FROM existing) AND t.external_message_id = ANY(p_references)
              LIMIT 1)
            UNION ALL
            (SELECT c.ticket_id FROM ticket_comments c
              WHERE NOT EXISTS (SELECT 1 FROM existing) AND c.external_message_id = ANY(p_references)
              LIMIT 1)
            UNION ALL
            (SELECT t.id FROM tickets t
              WHERE NOT EXISTS (SELECT 1 FROM existing) AND t.conversation_id = p_conversation_id
              ORDER BY t.conversation_id, t.id LIMIT 1)
            LIMIT 1
        ), new_comment AS (
            INSERT INTO ticket_comments (ticket_id, external_message_id, graph_message_id, sender, body_preview)
            SELECT id, p_message_id, p_graph_message_id, p_sender, p_preview FROM parent
            ON CONFLICT (external_message_id) DO NOTHING
            RETURNING id
        ), new_ticket AS (
            INSERT INTO tickets (external_message_id, conversation_id, mailbox, graph_message_id, subject, sender, body_preview)
            SELECT p_message_id, p_conversation_id, p_mailbox, p_graph_message_id, p_subject, p_sender, p_preview
             WHERE NOT EXISTS (SELECT 1 FROM existing) AND NOT EXISTS (SELECT 1 FROM parent)
            ON CONFLICT (external_message_id) DO NOTHING
            RETURNING id
        ), settled AS (
            SELECT CASE
                     WHEN EXISTS (SELECT 1 FROM existing) THEN 'duplicate'
                     WHEN EXISTS (SELECT 1 FROM new_ticket) THEN 'ticket'
                     WHEN EXISTS (SELECT 1 FROM new_comment) THEN 'comment'
                     ELSE 'conflict'
                   END AS outcome,
                   COALESCE((SELECT kind FROM existing), '') AS existing_kind,
                   COALESCE((SELECT id FROM existing), (SELECT id FROM new_ticket), (SELECT id FROM new_comment)) AS row_id
        ), logged AS (
            -- The event log row rides in the same statement (one round trip per effect); same rules as
            -- event_log_record. A 'conflict' is logged by the recovery path instead.
            INSERT INTO event_log (provider, event_key, kind, outcome, effect_id, payload, replay_of)
            SELECT 'graph', p_event_key, p_kind, outcome, row_id::text, NULL, p_replay_of
              FROM settled WHERE outcome <> 'conflict'
            ON CONFLICT (provider, event_key) DO UPDATE
               SET deliveries = event_log.deliveries + 1, last_seen_at = now(),
                   outcome = CASE WHEN EXCLUDED.replay_of IS NULL THEN event_log.outcome ELSE EXCLUDED.outcome END,
                   effect_id = CASE WHEN EXCLUDED.replay_of IS NULL THEN event_log.effect_id ELSE EXCLUDED.effect_id END,
                   replay_of = COALESCE(EXCLUDED.replay_of, event_log.replay_of)
            RETURNING id
        )
        SELECT settled.outcome, settled.existing_kind, settled.row_id FROM settled;
END
$fn$;
