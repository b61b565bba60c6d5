"""The mailbox chaos storm's IMAP proxy (``tests/chaos/imap_faults.py``) against a real dovecot: the witness of
"never two IMAP sessions of one user at once" sees an overlap when there is one, and its faults break reads."""

from __future__ import annotations

import imaplib
import uuid

import pytest

from exactly_once.flows.mailbox.imap import ImapAccount, ImapReadError, fetch_since
from tests import mailbox_support
from tests.chaos.imap_faults import FaultyImapProxy

dovecot = mailbox_support.dovecot


def test_the_chaos_imap_proxy_sees_two_sessions_of_one_user_and_breaks_fetches_midway(dovecot):
    """The mailbox storm's IMAP witness is not blind: it counts overlapping sessions and its faults do break reads."""
    # GIVEN a user with mail, behind the chaos proxy
    login, password = f"proxy-check.{uuid.uuid4().hex[:8]}", "pw-proxy-check"
    dovecot.add_user(login, password)
    dovecot.wait_for_login(login, password)
    dovecot.add_mail(login, "<one@bank.example>")
    proxy = FaultyImapProxy((dovecot.host, dovecot.port)).start()
    try:
        # WHEN two sessions of the user are open at once
        with imaplib.IMAP4(proxy.host, proxy.port) as first, imaplib.IMAP4(proxy.host, proxy.port) as second:
            first.login(login, password)
            second.login(login, password)
        # THEN the proxy saw both at once
        assert proxy.max_at_once[login] == 2 and proxy.overlaps
        # WHEN every FETCH draws a fault
        proxy.rate = 1.0
        account = ImapAccount(proxy.host, proxy.port, login, password, use_ssl=False, timeout=5, allow_plaintext=True)
        for _ in range(4):
            with pytest.raises(ImapReadError):
                fetch_since(account, None)
        # THEN each read failed at its first FETCH, by a hang-up or a reset
        assert sum(proxy.injected.values()) == 4 and set(proxy.injected) <= {"imap hangup", "imap reset"}
        proxy.rate = 0.0
        assert [m.message_id for m in fetch_since(account, None)] == ["<one@bank.example>"]
    finally:
        proxy.stop()
