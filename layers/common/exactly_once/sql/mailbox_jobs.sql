-- name: mailbox_job_create
-- One statement: the job exists for an enabled user, or the unique index / job id says no.
-- ON CONFLICT without a target covers both the job id and the one-pending-per-user index.
INSERT INTO mailbox_jobs (job_id, user_id, slot, origin, status)
SELECT %(job_id)s, c.user_id, %(slot)s, %(origin)s, 'scheduled'
  FROM mailbox_configs c
 WHERE c.user_id = %(user_id)s AND c.enabled
ON CONFLICT DO NOTHING
RETURNING job_id, status, created_at;

-- name: mailbox_job_status
-- The user's configuration, their pending job (at most one) and the job of the given slot.
SELECT c.user_id IS NOT NULL AS configured,
       coalesce(c.enabled, false) AS enabled,
       p.job_id, p.status, coalesce(p.started_at, p.created_at) AS since,
       s.job_id AS slot_job_id, s.status AS slot_status,
       c.last_check_time
  FROM (SELECT %(user_id)s::text AS user_id) u
  LEFT JOIN mailbox_configs c ON c.user_id = u.user_id
  LEFT JOIN mailbox_jobs p ON p.user_id = u.user_id AND p.status IN ('scheduled', 'queued', 'running')
  LEFT JOIN mailbox_jobs s ON s.job_id = %(job_id)s;

-- name: mailbox_jobs_in_slot
-- How many jobs the user has had in this slot: the next re-run's number.
SELECT count(*) FROM mailbox_jobs WHERE user_id = %(user_id)s AND slot = %(slot)s;

-- name: mailbox_job_mark_queued
-- The JobsQueue accepted the job: it must now be claimed before lease_until, or the reaper expires it.
UPDATE mailbox_jobs
   SET status = 'queued', lease_until = now() + make_interval(secs => %(queue_ttl)s), updated_at = now()
 WHERE job_id = %(job_id)s AND status = 'scheduled'
RETURNING job_id;

-- name: mailbox_jobs_unrelayed
-- Jobs recorded but not known to be on the queue (the send failed, or the process died after the insert).
SELECT job_id, user_id
  FROM mailbox_jobs
 WHERE status = 'scheduled' AND created_at < now() - make_interval(secs => %(grace)s)
 ORDER BY created_at
 LIMIT %(limit)s;

-- name: mailbox_users_due
-- Enabled users whose last job's slot is an interval old (or who never had one) and who have no
-- pending job: up to %(limit)s of them, so users waiting on a pending job never take a due
-- user's place. Then, apart and limited on their own, the users with a pending job (the scheduler
-- logs that it skipped them, with the job's status); their pending_job_id is never NULL.
(SELECT c.user_id, c.interval_minutes, NULL::text AS pending_job_id, NULL::text AS pending_status,
        NULL::timestamptz AS pending_since
   FROM mailbox_configs c
   LEFT JOIN LATERAL (SELECT max(j.slot) AS last_slot FROM mailbox_jobs j WHERE j.user_id = c.user_id) l ON true
  WHERE c.enabled
    AND NOT EXISTS (SELECT 1 FROM mailbox_jobs p
                     WHERE p.user_id = c.user_id AND p.status IN ('scheduled', 'queued', 'running'))
    AND (l.last_slot IS NULL OR l.last_slot + make_interval(mins => c.interval_minutes) <= %(slot)s)
  ORDER BY c.user_id
  LIMIT %(limit)s)
UNION ALL
(SELECT c.user_id, c.interval_minutes, p.job_id, p.status, coalesce(p.started_at, p.created_at)
   FROM mailbox_configs c
   JOIN mailbox_jobs p ON p.user_id = c.user_id AND p.status IN ('scheduled', 'queued', 'running')
  WHERE c.enabled
  ORDER BY c.user_id
  LIMIT %(limit)s);

-- name: mailbox_job_claim
-- queued/scheduled -> running, or take over a running job whose lease ran out (its worker died).
-- A live lease is never taken: at most one worker, so one IMAP connection, per job and so per user.
UPDATE mailbox_jobs
   SET status = 'running', claim_token = %(token)s, attempts = attempts + 1,
       lease_until = now() + make_interval(secs => %(lease)s),
       started_at = coalesce(started_at, now()), updated_at = now(), error = NULL
 WHERE job_id = %(job_id)s
   AND (status IN ('scheduled', 'queued') OR (status = 'running' AND lease_until < now()))
RETURNING user_id, attempts, now() AS claimed_at;

-- name: mailbox_job_get
SELECT job_id, user_id, status, attempts, lease_until FROM mailbox_jobs WHERE job_id = %(job_id)s;

-- name: mailbox_job_fence
-- Inside an effect's transaction: the claim is still ours; FOR SHARE keeps the reaper and any
-- takeover out until this transaction ends.
SELECT 1 FROM mailbox_jobs
 WHERE job_id = %(job_id)s AND claim_token = %(token)s AND status = 'running'
   FOR SHARE;

-- name: mailbox_config_get
SELECT user_id, imap_host, imap_port, imap_username, imap_ssl, password_secret, mailbox_folder, last_check_time
  FROM mailbox_configs WHERE user_id = %(user_id)s;

-- name: processed_mail_insert
-- The once-per-user key of a mail: a retried job finds it and skips the effect.
INSERT INTO processed_mails (user_id, message_id, job_id, subject, sender, received_at)
VALUES (%(user_id)s, %(message_id)s, %(job_id)s, %(subject)s, %(sender)s, %(received_at)s)
ON CONFLICT (user_id, message_id) DO NOTHING
RETURNING id;

-- name: mailbox_job_progress
UPDATE mailbox_jobs
   SET mails_seen = %(seen)s, mails_processed = mails_processed + %(processed)s, updated_at = now()
 WHERE job_id = %(job_id)s AND claim_token = %(token)s AND status = 'running';

-- name: mailbox_job_finish
-- Fenced completion; last_check_time moves only forward, and only for the claim holder.
WITH done AS (
    UPDATE mailbox_jobs
       SET status = 'succeeded', finished_at = now(), updated_at = now(), lease_until = NULL,
           mails_seen = %(seen)s, mails_processed = mails_processed + %(processed)s
     WHERE job_id = %(job_id)s AND claim_token = %(token)s AND status = 'running'
    RETURNING user_id
)
UPDATE mailbox_configs c
   SET last_check_time = GREATEST(coalesce(c.last_check_time, '-infinity'::timestamptz), %(checked_at)s),
       updated_at = now()
  FROM done
 WHERE c.user_id = done.user_id
RETURNING c.last_check_time;

-- name: mailbox_job_release
-- A failed attempt: back to queued for the queue's retry, or failed once out of attempts. Fenced.
UPDATE mailbox_jobs
   SET status = CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'queued' END,
       claim_token = NULL,
       lease_until = CASE WHEN attempts >= %(max_attempts)s THEN NULL
                          ELSE now() + make_interval(secs => %(queue_ttl)s) END,
       finished_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END,
       error = %(error)s, updated_at = now()
 WHERE job_id = %(job_id)s AND claim_token = %(token)s AND status = 'running'
RETURNING status;

-- name: mailbox_jobs_expire
-- The reaper: a running job whose lease ran out (its worker crashed or hit the timeout), or a queued
-- job nobody claimed in time (its message was lost): expired, so the user's next slot can proceed.
UPDATE mailbox_jobs
   SET status = 'expired', finished_at = now(), updated_at = now(), claim_token = NULL,
       error = coalesce(error, 'lease expired while ' || status)
 WHERE id IN (
       SELECT id FROM mailbox_jobs
        WHERE status IN ('queued', 'running') AND lease_until < now()
        ORDER BY lease_until
        LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED)
RETURNING job_id, user_id;
