-- Several mails' effects in one call and one transaction: an SQS batch of Graph events commits once.
--
-- Every advisory lock is taken first, in one global order (thread locks by key, then message
-- locks by key), so two batches, or a batch and a single eo_apply_mail (thread, then message),
-- never wait on each other in a cycle. Then each mail runs through eo_apply_mail in the batch's
-- order (its locks are already held: advisory locks are re-entrant), so a reply sees the ticket
-- an earlier mail of the same batch created. The caller's implicit transaction holds the locks
-- to the commit; a unique violation aborts the whole call, and the caller retries mail by mail.
CREATE OR REPLACE FUNCTION eo_apply_mails(p_mails jsonb)
RETURNS TABLE (ord integer, outcome text, existing_kind text, row_id bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    m jsonb;
    h integer;
    i integer := 0;
BEGIN
    FOR h IN SELECT DISTINCT hashtext(e->>'thread') FROM jsonb_array_elements(p_mails) e ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1, h);
    END LOOP;
    FOR h IN SELECT DISTINCT hashtext(e->>'message_id') FROM jsonb_array_elements(p_mails) e ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(2, h);
    END LOOP;
    FOR m IN SELECT value FROM jsonb_array_elements(p_mails) LOOP
        RETURN QUERY
            SELECT i, a.outcome, a.existing_kind, a.row_id
              FROM eo_apply_mail(
                       m->>'thread', m->>'message_id',
                       ARRAY(SELECT jsonb_array_elements_text(COALESCE(m->'references', '[]'::jsonb))),
                       m->>'conversation_id', m->>'mailbox', m->>'graph_message_id', m->>'subject',
                       m->>'sender', m->>'preview', m->>'event_key', m->>'kind', m->>'replay_of') AS a;
        i := i + 1;
    END LOOP;
END
$fn$;
