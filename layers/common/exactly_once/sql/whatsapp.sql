-- name: whatsapp_message_insert
-- The gate: the first delivery of a wamid inserts, every later one (a millisecond or a week
-- later) gets no row back. A concurrent duplicate waits on the uncommitted row, then gets none.
INSERT INTO whatsapp_messages
    (wamid, phone_number_id, waba_id, wa_id, contact_name, type, text, context_wamid, sent_at, raw)
VALUES
    (%(wamid)s, %(phone_number_id)s, %(waba_id)s, %(wa_id)s, %(contact_name)s, %(type)s, %(text)s,
     %(context_wamid)s, to_timestamp(%(sent_at)s), %(raw)s)
ON CONFLICT (wamid) DO NOTHING
RETURNING id;

-- name: whatsapp_message_find
SELECT id FROM whatsapp_messages WHERE wamid = %(wamid)s;

-- name: delivery_apply
-- Monotonic without a lock: the status changes only when the new one ranks higher, so a late
-- "delivered" never overwrites "read". A failure's errors are kept even when the failure itself
-- ranks lower than the current status (a "failed" after "delivered": the row stays delivered,
-- the errors are stored for review). No row back: the update was stale or a duplicate.
-- advanced = the status moved forward (or the row is new).
INSERT INTO message_delivery AS d
    (provider_message_id, channel, phone_number_id, recipient_id, status, rank, status_at, errors, conversation, pricing)
VALUES
    (%(provider_message_id)s, %(channel)s, %(phone_number_id)s, %(recipient_id)s, %(status)s,
     delivery_status_rank(%(status)s), to_timestamp(%(status_at)s), %(errors)s, %(conversation)s, %(pricing)s)
ON CONFLICT (provider_message_id) DO UPDATE
   SET status = CASE WHEN EXCLUDED.rank > d.rank THEN EXCLUDED.status ELSE d.status END,
       rank = GREATEST(EXCLUDED.rank, d.rank),
       status_at = CASE WHEN EXCLUDED.rank > d.rank THEN EXCLUDED.status_at ELSE d.status_at END,
       errors = COALESCE(EXCLUDED.errors, d.errors),
       conversation = COALESCE(EXCLUDED.conversation, d.conversation),
       pricing = COALESCE(EXCLUDED.pricing, d.pricing),
       recipient_id = COALESCE(d.recipient_id, EXCLUDED.recipient_id),
       updated_at = now()
 WHERE EXCLUDED.rank > d.rank
    OR (EXCLUDED.errors IS NOT NULL AND d.errors IS DISTINCT FROM EXCLUDED.errors)
RETURNING d.status, (xmax = 0) AS inserted, (d.status = %(status)s) AS advanced;

-- name: delivery_current
SELECT status FROM message_delivery WHERE provider_message_id = %(provider_message_id)s;
