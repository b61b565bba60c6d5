-- name: linkedin_message_record
-- One row per (account, message): a redelivery, or the same message under another event, changes nothing.
INSERT INTO linkedin_messages
       (account_id, message_id, chat_id, direction, sender_id, sender_name, body, sent_at, event_key)
VALUES (%(account_id)s, %(message_id)s, %(chat_id)s, %(direction)s, %(sender_id)s, %(sender_name)s,
        %(body)s, %(sent_at)s, %(event_key)s)
ON CONFLICT ON CONSTRAINT linkedin_messages_account_message_unique DO NOTHING
RETURNING id;

-- name: linkedin_message_find
SELECT id, direction FROM linkedin_messages WHERE account_id = %(account_id)s AND message_id = %(message_id)s;
