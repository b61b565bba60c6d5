-- Mail processing (the mailbox-jobs flow): a processor's failures per mail, and the example
-- processor's table (flows/mailbox/transaction_alerts.py).
--
-- A mail whose processor raised is not in processed_mails (its transaction rolled back): the row
-- here counts its failures and keeps the message, so the user's next jobs retry it from `raw`
-- whether or not it is still in the IMAP search window, without holding the other mails back.
-- A retry that succeeds makes it 'processed' (in the transaction of its processed_mails row); after
-- MAILBOX_MAIL_MAX_FAILURES failures (or a MailRejectedError) it is 'quarantined' (a quarantine row
-- with the raw message and the reason) and no job reads it again.
CREATE TABLE mailbox_mail_failures (
    user_id        text NOT NULL REFERENCES mailbox_configs (user_id),
    message_id     text NOT NULL,
    status         text NOT NULL DEFAULT 'retrying' CHECK (status IN ('retrying', 'processed', 'quarantined')),
    failures       integer NOT NULL DEFAULT 1 CHECK (failures >= 1),
    last_error     text NOT NULL,
    last_job_id    text NOT NULL,
    uid            bigint,
    received_at    timestamptz,
    subject        text NOT NULL DEFAULT '',
    sender         text NOT NULL DEFAULT '',
    raw            bytea NOT NULL,
    quarantine_id  bigint,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX mailbox_mail_failures_retrying_idx ON mailbox_mail_failures (user_id) WHERE status = 'retrying';

-- The example processor's effect: one row per transaction-alert mail (the unique key says once).
CREATE TABLE mail_transactions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL REFERENCES mailbox_configs (user_id),
    message_id    text NOT NULL,
    amount        numeric(14, 2) NOT NULL CHECK (amount >= 0),
    currency      text,
    direction     text CHECK (direction IN ('debit', 'credit')),
    occurred_on   date,
    reference     text,
    account_hint  text,                        -- e.g. the last digits of the account, as the mail names them
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mail_transactions_user_message_unique UNIQUE (user_id, message_id)
);
