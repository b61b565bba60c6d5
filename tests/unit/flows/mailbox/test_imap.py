"""The IMAP client's search window and its reading of FETCH responses (UID before or after the literal)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from imapclient.response_parser import parse_fetch_response

from exactly_once.flows.mailbox.imap import ImapReadError, mails_from_fetch, search_since

HEADERS = b"Message-ID: <m%d@bank.example>\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nFrom: bank@example.com\r\n\r\n"
SECTION = b"BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM)]"
DATE = b'INTERNALDATE "01-Mar-2026 10:00:00 +0100" RFC822.SIZE 120'


def _response(uid_first: bool, *uids: int) -> list[object]:
    """What imaplib hands over for a UID FETCH of the headers: (text before the literal, literal), then the rest."""
    lines: list[object] = []
    for seq, uid in enumerate(uids, start=1):
        literal = HEADERS % uid
        if uid_first:
            lines += [(b"%d (UID %d %s %s {%d}" % (seq, uid, DATE, SECTION, len(literal)), literal), b")"]
        else:  # the UID after the literal: legal (RFC 3501 leaves the order to the server)
            lines += [(b"%d (%s %s {%d}" % (seq, DATE, SECTION, len(literal)), literal), b" UID %d)" % uid]
    return lines


def test_imap_search_starts_a_day_before_the_last_check():
    assert search_since(datetime(2026, 3, 1, 0, 30, tzinfo=UTC), 7) == "28-Feb-2026"


@pytest.mark.parametrize("uid_first", [True, False], ids=["uid-before-literal", "uid-after-literal"])
def test_each_mail_is_read_with_its_uid_wherever_the_server_puts_it(uid_first):
    # GIVEN a server's FETCH response for two mails, UID before or after the header literal
    response = parse_fetch_response(_response(uid_first, 7, 9), normalise_times=False)
    # WHEN the headers are read
    mails = mails_from_fetch([7, 9], response, uidvalidity=42, folder="INBOX")
    # THEN both mails are there, each with its own UID, Message-ID, decoded subject and date
    assert [(m.uid, m.message_id) for m in mails] == [(7, "<m7@bank.example>"), (9, "<m9@bank.example>")]
    assert {m.subject for m in mails} == {"Café"}
    assert mails[0].received_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert mails[0].size == 120


def test_a_requested_uid_missing_from_the_response_fails_the_read_instead_of_vanishing():
    response = parse_fetch_response(_response(False, 7), normalise_times=False)
    with pytest.raises(ImapReadError, match="UID 9"):
        mails_from_fetch([7, 9], response, uidvalidity=42, folder="INBOX")
