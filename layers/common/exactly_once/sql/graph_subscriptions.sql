-- Microsoft Graph subscriptions: watched mailboxes, their subscriptions, the manager's claims, the resync cursor.
-- Every time is a parameter (%(now)s): the manager runs on the caller's clock, so a test can move it.

-- name: graph_mailbox_watch
INSERT INTO graph_mailboxes (mailbox, folder, source, watched)
VALUES (%(mailbox)s, %(folder)s, %(source)s, true)
ON CONFLICT (mailbox) DO UPDATE
   SET watched = true,
       folder = EXCLUDED.folder,
       -- an operator's mailbox stays the operator's when the parameter names it too
       source = CASE WHEN graph_mailboxes.watched AND graph_mailboxes.source = 'operator'
                     THEN 'operator' ELSE EXCLUDED.source END,
       delta_link = CASE WHEN graph_mailboxes.folder = EXCLUDED.folder THEN graph_mailboxes.delta_link END,
       page_link = CASE WHEN graph_mailboxes.folder = EXCLUDED.folder THEN graph_mailboxes.page_link END
RETURNING mailbox, folder, source

-- name: graph_mailbox_unwatch
UPDATE graph_mailboxes SET watched = false WHERE mailbox = %(mailbox)s AND watched RETURNING mailbox

-- name: graph_mailboxes_unwatch_parameter
-- The parameter no longer names these: the manager deletes their subscriptions.
UPDATE graph_mailboxes SET watched = false
 WHERE source = 'parameter' AND watched AND NOT (mailbox = ANY(%(mailboxes)s))
RETURNING mailbox

-- name: graph_mailboxes_to_manage
-- Watched mailboxes, and unwatched ones that still have a live subscription to delete.
SELECT m.mailbox
  FROM graph_mailboxes m
 WHERE m.watched
    OR EXISTS (SELECT 1 FROM graph_subscriptions s WHERE s.mailbox = m.mailbox AND s.status = 'active')
 ORDER BY m.mailbox

-- name: graph_mailbox_claim
-- One manager run or one lifecycle action on a mailbox at a time; a dead holder's lease runs out.
UPDATE graph_mailboxes
   SET claim_token = %(token)s, claimed_until = %(until)s
 WHERE mailbox = %(mailbox)s AND (claimed_until IS NULL OR claimed_until < %(now)s)
RETURNING mailbox, folder, watched, user_id, failures, next_attempt_at

-- name: graph_mailbox_release
UPDATE graph_mailboxes SET claim_token = NULL, claimed_until = NULL
 WHERE mailbox = %(mailbox)s AND claim_token = %(token)s

-- name: graph_mailbox_holds
-- Locks the mailbox row to the commit: a claim cannot be taken over between this check and the write.
SELECT 1 FROM graph_mailboxes WHERE mailbox = %(mailbox)s AND claim_token = %(token)s FOR UPDATE

-- name: graph_mailbox_succeeded
UPDATE graph_mailboxes
   SET failures = 0, last_error = NULL, next_attempt_at = NULL
 WHERE mailbox = %(mailbox)s AND claim_token = %(token)s
RETURNING mailbox

-- name: graph_mailbox_user_id
UPDATE graph_mailboxes SET user_id = %(user_id)s WHERE mailbox = %(mailbox)s AND claim_token = %(token)s

-- name: graph_mailbox_failed
UPDATE graph_mailboxes
   SET failures = failures + 1, last_error = %(error)s,
       next_attempt_at = %(now)s + make_interval(secs => LEAST(3600, 60 * power(2, LEAST(failures, 6))))
 WHERE mailbox = %(mailbox)s AND claim_token = %(token)s
RETURNING failures, next_attempt_at

-- name: graph_subscription_active
SELECT subscription_id, resource, client_state_id, expires_at
  FROM graph_subscriptions WHERE mailbox = %(mailbox)s AND status = 'active'

-- name: graph_subscription_insert
INSERT INTO graph_subscriptions (subscription_id, mailbox, resource, client_state_id, expires_at, status, created_at)
VALUES (%(subscription_id)s, %(mailbox)s, %(resource)s, %(client_state_id)s, %(expires_at)s, 'active', %(now)s)

-- name: graph_subscription_renewed
UPDATE graph_subscriptions SET expires_at = %(expires_at)s, renewed_at = %(now)s
 WHERE subscription_id = %(subscription_id)s AND status = 'active'
RETURNING subscription_id

-- name: graph_subscription_retire
UPDATE graph_subscriptions SET status = %(status)s, retired_at = %(now)s
 WHERE subscription_id = %(subscription_id)s AND status = 'active'
RETURNING subscription_id

-- name: graph_subscription_known
-- A notification's subscription: ours (any status: a replaced one's late deliveries are ours too)?
SELECT s.mailbox, s.status, m.user_id, m.watched
  FROM graph_subscriptions s JOIN graph_mailboxes m ON m.mailbox = s.mailbox
 WHERE s.subscription_id = %(subscription_id)s

-- name: graph_subscriptions_at_risk
-- Watched mailboxes whose live subscription lapses within %(horizon)s, or which have none.
SELECT count(*) FROM graph_mailboxes m
 WHERE m.watched
   AND NOT EXISTS (SELECT 1 FROM graph_subscriptions s
                    WHERE s.mailbox = m.mailbox AND s.status = 'active' AND s.expires_at > %(now)s + %(horizon)s)

-- name: graph_resync_want
UPDATE graph_mailboxes SET resync_wanted_at = GREATEST(COALESCE(resync_wanted_at, %(now)s), %(now)s)
 WHERE mailbox = %(mailbox)s
RETURNING mailbox

-- name: graph_resyncs_due
-- Mailboxes a resync is owed: asked for, interrupted (a page link), never run, or older than the safety net.
SELECT mailbox FROM graph_mailboxes
 WHERE watched
   AND (resync_wanted_at IS NOT NULL OR page_link IS NOT NULL OR resynced_at IS NULL
        OR resynced_at < %(now)s - %(every)s)
 ORDER BY resync_wanted_at NULLS LAST, resynced_at NULLS FIRST, mailbox

-- name: graph_resync_claim
UPDATE graph_mailboxes
   SET resync_token = %(token)s, resync_until = %(until)s
 WHERE mailbox = %(mailbox)s AND watched AND (resync_until IS NULL OR resync_until < %(now)s)
RETURNING mailbox, folder, user_id, delta_link, page_link, resync_wanted_at

-- name: graph_resync_page
-- A page's mails are queued: the resync resumes after them (fenced on the resync's claim).
UPDATE graph_mailboxes
   SET page_link = %(page_link)s, resynced_mails = resynced_mails + %(mails)s, resync_until = %(until)s
 WHERE mailbox = %(mailbox)s AND resync_token = %(token)s
RETURNING mailbox

-- name: graph_resync_done
-- The last page's mails are queued: the delta link is where the next resync starts. A request made
-- after this resync started is kept (it may name mail this resync's pages were past).
UPDATE graph_mailboxes
   SET delta_link = %(delta_link)s, page_link = NULL, resynced_at = %(now)s, resync_error = NULL,
       resynced_mails = resynced_mails + %(mails)s,
       resync_wanted_at = CASE WHEN resync_wanted_at <= %(started)s THEN NULL ELSE resync_wanted_at END,
       resync_token = NULL, resync_until = NULL
 WHERE mailbox = %(mailbox)s AND resync_token = %(token)s
RETURNING mailbox

-- name: graph_resync_failed
UPDATE graph_mailboxes
   SET resync_error = %(error)s, resync_token = NULL, resync_until = NULL,
       delta_link = CASE WHEN %(restart)s THEN NULL ELSE delta_link END,
       page_link = CASE WHEN %(restart)s THEN NULL ELSE page_link END
 WHERE mailbox = %(mailbox)s AND resync_token = %(token)s
RETURNING mailbox

-- name: graph_status
SELECT m.mailbox, m.folder, m.source, m.watched, m.failures, m.last_error, m.next_attempt_at,
       s.subscription_id, s.client_state_id, s.expires_at, s.renewed_at,
       m.resynced_at, m.resynced_mails, m.resync_wanted_at, m.page_link IS NOT NULL AS resync_in_progress,
       m.resync_error
  FROM graph_mailboxes m
  LEFT JOIN graph_subscriptions s ON s.mailbox = m.mailbox AND s.status = 'active'
 ORDER BY m.mailbox

-- name: graph_managed_mode
-- Once a mailbox is watched, only the bundle's subscriptions are fetched (before that, hand-made ones are).
SELECT EXISTS (SELECT 1 FROM graph_mailboxes WHERE watched)
