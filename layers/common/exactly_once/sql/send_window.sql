-- name: whatsapp_last_inbound
-- The customer's last message to this business number (the 24-hour customer-service window opens
-- at it). NULL when the bundle never saw the conversation: Meta then decides alone (131047).
SELECT max(coalesce(sent_at, received_at)) AS last_inbound
  FROM whatsapp_messages
 WHERE phone_number_id = %(phone_number_id)s AND wa_id = %(wa_id)s;
