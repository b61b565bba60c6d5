-- name: processed_mails_known
-- The mails of this search whose body the job need not read: processed, or quarantined after failures.
SELECT message_id FROM processed_mails
 WHERE user_id = %(user_id)s AND message_id = ANY(%(message_ids)s)
UNION
SELECT message_id FROM mailbox_mail_failures
 WHERE user_id = %(user_id)s AND message_id = ANY(%(message_ids)s) AND status = 'quarantined';

-- name: mail_failures_retrying
-- Mails whose processor failed in an earlier job: retried from the stored message, oldest first.
SELECT message_id, uid, received_at, subject, sender, raw
  FROM mailbox_mail_failures
 WHERE user_id = %(user_id)s AND status = 'retrying'
 ORDER BY first_failed_at
 LIMIT %(limit)s;

-- name: mail_failure_record
-- One more failure of the mail's processor (inside the fenced transaction of that attempt).
-- 'quarantined' once the count reaches max_failures (0: at once); the caller then writes the quarantine row.
INSERT INTO mailbox_mail_failures
       (user_id, message_id, status, last_error, last_job_id, uid, received_at, subject, sender, raw)
VALUES (%(user_id)s, %(message_id)s, CASE WHEN %(max_failures)s <= 1 THEN 'quarantined' ELSE 'retrying' END,
        %(error)s, %(job_id)s, %(uid)s, %(received_at)s, %(subject)s, %(sender)s, %(raw)s)
ON CONFLICT (user_id, message_id) DO UPDATE
   SET failures = mailbox_mail_failures.failures + 1,
       status = CASE WHEN mailbox_mail_failures.failures + 1 >= %(max_failures)s THEN 'quarantined'
                     ELSE 'retrying' END,
       last_error = EXCLUDED.last_error, last_job_id = EXCLUDED.last_job_id, updated_at = now()
 WHERE mailbox_mail_failures.status = 'retrying'
RETURNING failures, status;

-- name: mail_failure_quarantined
UPDATE mailbox_mail_failures SET quarantine_id = %(quarantine_id)s, updated_at = now()
 WHERE user_id = %(user_id)s AND message_id = %(message_id)s;

-- name: mail_failure_settled
-- The retried mail was processed (its processed_mails row is in the same transaction): kept, as history.
UPDATE mailbox_mail_failures SET status = 'processed', updated_at = now()
 WHERE user_id = %(user_id)s AND message_id = %(message_id)s AND status = 'retrying';

-- name: mail_transaction_insert
-- The example processor's effect. No ON CONFLICT: processed_mails already guards the mail, and a
-- second row would be a bug the unique constraint must show, not hide.
INSERT INTO mail_transactions
       (user_id, message_id, amount, currency, direction, occurred_on, reference, account_hint)
VALUES (%(user_id)s, %(message_id)s, %(amount)s, %(currency)s, %(direction)s, %(occurred_on)s,
        %(reference)s, %(account_hint)s)
RETURNING id;
