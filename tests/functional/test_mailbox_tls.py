"""Mailbox configuration that is refused, and IMAP over TLS against a real dovecot (imaps, on loopback): the
certificate and the host name are checked before the password leaves; plaintext IMAP is refused unless the
local stack allows it; a password name outside IMAP_PASSWORD_* is refused; a refused job fails at once with
the reason instead of logging in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import dovecot as dovecot_mod
from devstack.dovecot import Dovecot
from exactly_once.flows.mailbox.imap import ImapAccount, ImapConfigurationError, ImapReadError, fetch_since
from tests import mailbox_support
from tests.mailbox_support import TOKEN_HEADERS, WORKER, jobs
from tests.tls_support import TestCA

dovecot = mailbox_support.dovecot
imap_proxy = mailbox_support.imap_proxy
mailbox_user = mailbox_support.mailbox_user

PASSWORD = "tls-password-0123456789"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def _tls_dovecot(cert: Path, key: Path) -> Iterator[Dovecot]:
    if not dovecot_mod.available():
        pytest.skip("dovecot is not installed: apt-get install -y dovecot-imapd (.ci/run does it)")
    server = Dovecot(tls=(cert, key)).start()
    server.add_user("tls-user", PASSWORD)
    server.add_mail("tls-user", "<over-tls@bank.example>")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def imaps(ca: TestCA) -> Iterator[Dovecot]:
    """dovecot over TLS with a certificate for 127.0.0.1 and localhost, signed by the test CA."""
    issued = ca.issue("localhost", "127.0.0.1")
    yield from _tls_dovecot(issued.cert, issued.key)


def _account(server: Dovecot, host: str = "127.0.0.1", **kw: object) -> ImapAccount:
    return ImapAccount(host, server.port, "tls-user", PASSWORD, timeout=10.0, **kw)  # type: ignore[arg-type]


def _logins(server: Dovecot) -> int:
    """Successful LOGINs in dovecot's own log."""
    return server.log().count("Login: user=<tls-user>")


def test_a_server_whose_certificate_chains_to_a_trusted_ca_is_read_over_tls(imaps, ca, monkeypatch):
    # GIVEN the client trusts the test CA (OpenSSL's SSL_CERT_FILE, read by the default context)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    # WHEN the mailbox is read over imaps THEN the mail arrives
    mails = fetch_since(_account(imaps), None)
    assert [m.message_id for m in mails] == ["<over-tls@bank.example>"]


def test_a_certificate_from_an_unknown_ca_is_refused_before_login(imaps, monkeypatch):
    # GIVEN a client that trusts only the system's CAs: the server could be anyone on the path
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    logins = _logins(imaps)
    # WHEN it connects THEN the handshake fails on the certificate, so LOGIN (the password) is never sent
    with pytest.raises(ImapReadError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_since(_account(imaps), None)
    assert _logins(imaps) == logins


def test_a_trusted_certificate_for_another_host_name_is_refused(ca, monkeypatch):
    # GIVEN a server presenting a valid certificate of the trusted CA, but for another name
    issued = ca.issue("mail.example.org")
    server = next(_tls_dovecot(issued.cert, issued.key))
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
        # WHEN the client connects to 127.0.0.1 THEN the host name check refuses it
        with pytest.raises(ImapReadError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_since(_account(server), None)
        assert _logins(server) == 0
    finally:
        server.stop()


def test_plaintext_imap_is_refused_unless_allowed(dovecot):
    dovecot.add_user("plain-user", PASSWORD)
    plain = ImapAccount(dovecot.host, dovecot.port, "plain-user", PASSWORD, use_ssl=False)
    # WHEN plain IMAP is configured without the local-development allowance THEN it is a configuration error
    with pytest.raises(ImapConfigurationError, match="plaintext IMAP"):
        fetch_since(plain, None)
    # AND the same account, explicitly allowed (the local stack), reads the mailbox
    allowed = ImapAccount(dovecot.host, dovecot.port, "plain-user", PASSWORD, use_ssl=False, allow_plaintext=True)
    assert fetch_since(allowed, None) == []


def test_a_job_on_plaintext_imap_fails_at_once_without_logging_in(stack, db, mailbox_user, monkeypatch):
    # GIVEN a user whose mailbox is plain IMAP, on a stack that does not allow it (as on AWS)
    user = mailbox_user("plain")
    monkeypatch.setenv("MAILBOX_ALLOW_PLAINTEXT_IMAP", "false")
    answer = stack.invoke_http(
        "JobTriggerFunction", "POST", "http://127.0.0.1:3000/jobs/plain/trigger", b"", TOKEN_HEADERS
    )
    assert answer.status == 202
    # WHEN the worker takes the job
    poller = stack.poller(WORKER, "JobsQueue")
    poller.poll_once()
    # THEN the job failed on the first attempt with the reason, the message is settled, no LOGIN was sent
    assert jobs(db, "plain")[0][1:4] == ("failed", "trigger", 1)
    error = db.execute("SELECT error FROM mailbox_jobs WHERE user_id = 'plain'").fetchone()[0]
    assert "plaintext IMAP" in error
    assert poller.stats["failures"] == 0
    assert user.logins == 0


def test_a_job_naming_a_secret_outside_the_imap_prefix_fails_at_once_and_reads_nothing(stack, db, mailbox_user):
    # GIVEN whoever can write mailbox_configs points a user's password at the Lambda's own credentials
    user = mailbox_user("mallory")
    db.execute("UPDATE mailbox_configs SET password_secret = 'AWS_SESSION_TOKEN' WHERE user_id = 'mallory'")
    answer = stack.invoke_http(
        "JobTriggerFunction", "POST", "http://127.0.0.1:3000/jobs/mallory/trigger", b"", TOKEN_HEADERS
    )
    assert answer.status == 202
    # WHEN the worker takes the job
    poller = stack.poller(WORKER, "JobsQueue")
    poller.poll_once()
    # THEN the job failed on its first attempt, naming the rule; nothing was sent to the IMAP server
    assert jobs(db, "mallory")[0][1:4] == ("failed", "trigger", 1)
    error = db.execute("SELECT error FROM mailbox_jobs WHERE user_id = 'mallory'").fetchone()[0]
    assert "password_secret must match" in error
    assert user.logins == 0
