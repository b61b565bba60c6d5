"""Mail processing in mailbox jobs, on real mails in a real dovecot: the configured processor gets each new
mail parsed (headers, text and HTML bodies, attachments' metadata) inside the transaction that records it;
its failures are retried per mail, then quarantined; the example processor reads transaction alerts.

And the IMAP read itself: the same mails whether the server puts the UID before or after the literal
(a proxy rewrites dovecot's answers into the second order).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from typing import Any

import pytest

from exactly_once.flows.mailbox.imap import ImapAccount, fetch_since
from exactly_once.flows.mailbox.message import ParsedMail
from exactly_once.flows.mailbox.transaction_alerts import TransactionAlerts
from tests import mailbox_support
from tests.imap_reorder_proxy import ReorderingImapProxy
from tests.mailbox_support import TOKEN_HEADERS, TRIGGER, WORKER, MailboxUser, jobs

dovecot = mailbox_support.dovecot
imap_proxy = mailbox_support.imap_proxy
mailbox_user = mailbox_support.mailbox_user

BASE = "http://127.0.0.1:3000"
PDF = b"%PDF-1.4 statement " * 20


def alert(message_id: str, text: str, *, subject: str = "Transaction alert", html: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Bank Alerts <alerts@bank.example>"
    mail["To"] = "alice@example.com"
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail["X-Bank-Channel"] = "email"
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return bytes(mail)


def with_statement(raw: bytes) -> bytes:
    from email import message_from_bytes, policy

    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="statement-march.pdf")
    return bytes(mail)


class Recording:
    """Wraps a processor and keeps what it was given and how often."""

    def __init__(self, inner: Any = None, fail_for: Mapping[str, int] | None = None) -> None:
        self.inner = inner
        self.fail_for = dict(fail_for or {})  # message id -> calls that raise (a huge number: always)
        self.seen: list[ParsedMail] = []

    def process(self, conn: Any, mail: ParsedMail) -> Mapping[str, Any] | None:
        self.seen.append(mail)
        result = self.inner.process(conn, mail) if self.inner else None
        if self.fail_for.get(mail.message_id, 0) > 0:
            self.fail_for[mail.message_id] -= 1
            raise RuntimeError("processor is down")  # after its write: the write must roll back
        return result


@pytest.fixture
def use_processor(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set the job worker's processor (the handler loaded it once, at import)."""
    worker = importlib.import_module(stack.handler(WORKER).__module__).WORKER

    def use(processor: Any) -> Any:
        monkeypatch.setattr(worker, "processor", processor)
        return processor

    yield use


def run_job(stack: Any) -> None:
    answer = stack.invoke_http(TRIGGER, "POST", f"{BASE}/jobs/alice/trigger", b"", TOKEN_HEADERS)
    assert answer.status == 202, answer.json()
    stack.drain(WORKER, "JobsQueue")


def remove_mail(user: MailboxUser, message_id: str) -> None:
    maildir = user.dovecot.root / "mail" / user.username / "Maildir"
    for path in [*maildir.glob("new/*"), *maildir.glob("cur/*")]:
        if f"Message-ID: {message_id}".encode() in path.read_bytes():
            path.unlink()


def test_alerts_become_one_transaction_each_and_the_processor_sees_the_whole_mail(
    stack, db, mailbox_user, use_processor
):
    # GIVEN a multipart alert with an HTML part and a PDF, an HTML-only alert and a newsletter
    user = mailbox_user("alice")
    user.dovecot.add_raw_mail(
        user.username,
        with_statement(
            alert(
                "<t1@bank.example>",
                "INR 1,250.00 debited from A/c XX1234 on 01/03/2026. Ref: UPI/606112345678.",
                html="<p>INR <b>1,250.00</b> debited</p>",
            )
        ),
    )
    html_only = EmailMessage()
    html_only["From"], html_only["Subject"], html_only["Message-ID"] = "alerts@bank.example", "Credit", "<t2@bank>"
    html_only.set_content("<p>USD 75.20 credited to account ending 9876 on 2026-03-02, Txn ID TX-778899</p>", "html")
    user.dovecot.add_raw_mail(user.username, bytes(html_only))
    user.add_mail("<news@bank.example>", subject="Our new app", body="Download it today.")
    processor = use_processor(Recording(TransactionAlerts()))
    # WHEN the user's job runs, and then again
    run_job(stack)
    run_job(stack)
    # THEN each alert is one row, read from its text (or its HTML), the newsletter none
    rows = db.execute(
        "SELECT message_id, amount::text, currency, direction, occurred_on::text, reference, account_hint"
        " FROM mail_transactions ORDER BY message_id"
    ).fetchall()
    assert rows == [
        ("<t1@bank.example>", "1250.00", "INR", "debit", "2026-03-01", "UPI/606112345678", "1234"),
        ("<t2@bank>", "75.20", "USD", "credit", "2026-03-02", "TX-778899", "9876"),
    ]
    # AND the processor was called once per mail, with headers, both bodies and the attachment's metadata
    assert sorted(m.message_id for m in processor.seen) == ["<news@bank.example>", "<t1@bank.example>", "<t2@bank>"]
    first = next(m for m in processor.seen if m.message_id == "<t1@bank.example>")
    assert first.header("x-bank-channel") == "email" and first.sender == "Bank Alerts <alerts@bank.example>"
    assert first.text and "debited" in first.text and first.html and "<b>1,250.00</b>" in first.html
    assert [(a.filename, a.content_type, a.size) for a in first.attachments] == [
        ("statement-march.pdf", "application/pdf", len(PDF))
    ]
    assert first.uid > 0 and first.received_at is not None and first.raw.startswith(b"From:")
    # AND each mail's record and effect committed together: one event_log row each, with the result
    results = dict(
        db.execute("SELECT event_key, payload->'result'->>'transaction' FROM event_log WHERE provider = 'mailbox'")
    )
    assert results["alice:<news@bank.example>"] == "none"
    assert results["alice:<t1@bank.example>"].isdigit()
    assert [r[1] for r in jobs(db, "alice")] == ["succeeded", "succeeded"]
    assert [r[4] for r in jobs(db, "alice")] == [3, 0]


def test_a_failing_processor_retries_that_mail_alone_then_quarantines_it(
    stack, db, mailbox_user, use_processor, monkeypatch
):
    # GIVEN three alerts; the processor always fails on one of them, after writing its row
    monkeypatch.setenv("MAILBOX_MAIL_MAX_FAILURES", "3")
    user = mailbox_user("alice")
    for n in (1, 2, 3):
        user.dovecot.add_raw_mail(user.username, alert(f"<a{n}@bank>", f"EUR {n}0.00 debited, Ref REF-000{n}"))
    processor = use_processor(Recording(TransactionAlerts(), fail_for={"<a2@bank>": 10**6}))
    # WHEN the user's job runs
    run_job(stack)
    # THEN the other mails are processed; the failing one is not recorded, its write rolled back, its failure counted
    assert {r[0] for r in db.execute("SELECT message_id FROM mail_transactions")} == {"<a1@bank>", "<a3@bank>"}
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 2
    assert db.execute("SELECT status, failures FROM mailbox_mail_failures").fetchall() == [("retrying", 1)]
    assert jobs(db, "alice")[-1][1] == "succeeded"
    # WHEN the next jobs run: the mail is retried each time, alone, and quarantined at the third failure
    run_job(stack)
    run_job(stack)
    failure = db.execute("SELECT status, failures, last_error, quarantine_id FROM mailbox_mail_failures").fetchone()
    assert failure[:3] == ("quarantined", 3, "RuntimeError: processor is down")
    quarantined = db.execute(
        "SELECT provider, event_key, external_id, reason, raw FROM quarantine WHERE id = %s", (failure[3],)
    ).fetchone()
    assert quarantined[:3] == ("mailbox", "alice:<a2@bank>", "<a2@bank>")
    assert "failed 3 time(s)" in quarantined[3] and "processor is down" in quarantined[3]
    assert "EUR 20.00 debited" in quarantined[4] and "Message-ID: <a2@bank>" in quarantined[4]
    calls = [m.message_id for m in processor.seen]
    assert (calls.count("<a1@bank>"), calls.count("<a2@bank>"), calls.count("<a3@bank>")) == (1, 3, 1)
    # AND a later job leaves it in quarantine, untouched
    run_job(stack)
    assert [m.message_id for m in processor.seen].count("<a2@bank>") == 3
    assert db.execute("SELECT count(*) FROM quarantine WHERE provider = 'mailbox'").fetchone()[0] == 1
    assert db.execute("SELECT attempts FROM quarantine WHERE id = %s", (failure[3],)).fetchone()[0] == 1


def test_a_mail_that_failed_once_is_processed_by_the_next_job_even_after_it_left_the_mailbox(
    stack, db, mailbox_user, use_processor
):
    # GIVEN an alert the processor fails on once
    user = mailbox_user("alice")
    user.dovecot.add_raw_mail(user.username, alert("<once@bank>", "GBP 5.00 debited, Ref R-5555"))
    use_processor(Recording(TransactionAlerts(), fail_for={"<once@bank>": 1}))
    run_job(stack)
    assert db.execute("SELECT count(*) FROM mail_transactions").fetchone()[0] == 0
    # WHEN the user moves it out of the inbox, and the next job runs
    remove_mail(user, "<once@bank>")
    run_job(stack)
    # THEN it was processed from the stored copy, once, and its failure row says so
    assert db.execute("SELECT message_id, amount::text FROM mail_transactions").fetchall() == [("<once@bank>", "5.00")]
    assert db.execute("SELECT status, failures FROM mailbox_mail_failures").fetchall() == [("processed", 1)]
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 1


def test_an_alert_whose_amount_cannot_be_read_is_quarantined_at_once(stack, db, mailbox_user, use_processor):
    user = mailbox_user("alice")
    user.dovecot.add_raw_mail(user.username, alert("<garbled@bank>", "Transaction amount: n/a, call us"))
    use_processor(TransactionAlerts())
    run_job(stack)
    assert db.execute("SELECT status, failures FROM mailbox_mail_failures").fetchall() == [("quarantined", 1)]
    assert (
        db.execute("SELECT reason FROM quarantine WHERE provider = 'mailbox'")
        .fetchone()[0]
        .startswith("mail processor failed 1 time(s); last: rejected: ")
    )
    assert db.execute("SELECT count(*) FROM mail_transactions").fetchone()[0] == 0


@pytest.fixture
def reordering(dovecot: Any) -> Iterator[ReorderingImapProxy]:
    proxy = ReorderingImapProxy((dovecot.host, dovecot.port)).start()
    yield proxy
    proxy.stop()


def test_the_same_mails_are_read_whether_the_uid_comes_before_or_after_the_literal(
    stack, db, mailbox_user, reordering, use_processor
):
    # GIVEN mails in dovecot (UID first) and the same server behind a proxy that puts the UID last
    user = mailbox_user("alice")
    for n in range(5):
        user.dovecot.add_raw_mail(user.username, with_statement(alert(f"<o{n}@bank>", f"USD {n}1.00 debited")))
    user.add_mail(None, subject="no message id")

    def account(port: int) -> ImapAccount:
        return ImapAccount("127.0.0.1", port, user.username, user.password, use_ssl=False, allow_plaintext=True)

    # WHEN both are read
    direct = fetch_since(account(user.dovecot.port), None)
    reordered = fetch_since(account(reordering.port), None)
    # THEN the proxy did reorder, and every mail came back, with the same UID, Message-ID and message
    assert reordering.reordered >= 2 * 6  # the headers' FETCH and the bodies' FETCH, per mail
    assert len(direct) == 6 and all(m.raw for m in direct)
    assert [(m.uid, m.message_id, m.raw) for m in reordered] == [(m.uid, m.message_id, m.raw) for m in direct]
    # AND a job reading through the reordering server processes every mail
    db.execute("UPDATE mailbox_configs SET imap_port = %s WHERE user_id = 'alice'", (reordering.port,))
    use_processor(TransactionAlerts())
    run_job(stack)
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 6
    assert db.execute("SELECT count(*) FROM mail_transactions").fetchone()[0] == 5
