"""Reading a user's mailbox over IMAP (imapclient): one connection, opened, read, closed.

The worker reads the mails since the user's ``last_check_time`` over ONE connection that is closed
before any effect is written, so a job holds its IMAP connection for as short a time as possible:

1. ``UID SEARCH SINCE``: IMAP's SINCE has day granularity (in the server's time zone), so the search
   starts a day before ``last_check_time`` and ``processed_mails`` drops what was seen;
2. ``UID FETCH`` of the headers (Message-ID, Subject, From), the INTERNALDATE and the size;
3. ``UID FETCH BODY.PEEK[]`` (the whole message, the \\Seen flag untouched) of the mails the caller
   does not already know (``known``: the processed and quarantined ones are not read again).

FETCH responses are parsed by imapclient, keyed by the UID wherever the server puts it in the
response (before or after a literal: RFC 3501 leaves the order to the server). A requested UID that
comes back without its data fails the read (``ImapReadError``, the job is retried) instead of being
skipped: a mail never vanishes silently. A mail expunged between the SEARCH and the FETCH is found
absent by the retry's SEARCH.

TLS: the connection verifies the server's certificate and host name against the system's CAs
(``ssl.create_default_context``; imaplib's own default checks nothing, so anyone on the path could
pose as the server and read the password at LOGIN). Plaintext IMAP is refused with an
``ImapConfigurationError`` unless the account allows it, which only the local stack and the
dovecot tests do (``MAILBOX_ALLOW_PLAINTEXT_IMAP``; the template never sets it).
"""

from __future__ import annotations

import contextlib
import email.header
import imaplib
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email.parser import BytesHeaderParser
from typing import Any

from imapclient import IMAPClient

from exactly_once.core.errors import ConfigurationError

_HEADERS = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM)]"
_HEADER_ITEMS = [_HEADERS, b"INTERNALDATE", b"RFC822.SIZE"]
_BODY_ITEMS = [b"BODY.PEEK[]"]
_CHUNK = 200
_BODY_CHUNK = 25  # whole messages: fewer per round trip


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    username: str
    password: str
    use_ssl: bool = True
    folder: str = "INBOX"
    timeout: float = 30.0
    #: plaintext IMAP (use_ssl False) is refused unless this is set: local development only
    allow_plaintext: bool = False

    def __repr__(self) -> str:  # never print the password
        return f"ImapAccount({self.username}@{self.host}:{self.port}/{self.folder})"


@dataclass(frozen=True)
class Mail:
    message_id: str  # RFC 2822 Message-ID, or a stable stand-in built from UIDVALIDITY and UID
    subject: str
    sender: str
    received_at: datetime | None
    uid: int
    size: int = 0
    #: the whole message (RFC 5322 bytes); None when ``known`` named it (already processed or quarantined)
    raw: bytes | None = None


class ImapReadError(Exception):
    """The mailbox could not be read (connection, login, select or fetch failed)."""


class ImapConfigurationError(ConfigurationError):
    """The mailbox's configuration is refused (plaintext IMAP where it is not allowed): no retry helps."""


def tls_context() -> ssl.SSLContext:
    """A client context that checks the certificate chain and the host name (TLS 1.2 at least)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _text(value: str | None) -> str:
    if not value:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError):
        return value


def search_since(last_check: datetime | None, first_lookback_days: int) -> str:
    """The SEARCH SINCE date: a day before the last check (day granularity), or the first lookback."""
    return _since(last_check, first_lookback_days).strftime("%d-%b-%Y")


def _since(last_check: datetime | None, first_lookback_days: int) -> date:
    start = (last_check - timedelta(days=1)) if last_check else datetime.now(UTC) - timedelta(days=first_lookback_days)
    return start.date()


def fetch_since(
    account: ImapAccount,
    last_check: datetime | None,
    *,
    first_lookback_days: int = 7,
    known: Callable[[Sequence[str]], Collection[str]] | None = None,
) -> list[Mail]:
    """The mails since ``last_check``, over one connection that is always closed.

    ``known`` gets the Message-IDs found and returns those whose body is not needed; every other
    mail comes back with ``raw``, the whole message.
    """
    if not account.use_ssl and not account.allow_plaintext:
        raise ImapConfigurationError(
            f"plaintext IMAP to {account.host}:{account.port} is refused (the password would cross the network"
            " in clear): set imap_ssl, or MAILBOX_ALLOW_PLAINTEXT_IMAP=true for local development only"
        )
    try:
        client = IMAPClient(
            account.host,
            account.port,
            use_uid=True,
            ssl=account.use_ssl,
            ssl_context=tls_context() if account.use_ssl else None,
            timeout=account.timeout,
        )
    except OSError as exc:
        raise ImapReadError(f"cannot connect to {account.host}:{account.port}: {exc}") from exc
    except imaplib.IMAP4.error as exc:  # a greeting that is not IMAP
        raise ImapReadError(f"cannot connect to {account.host}:{account.port}: {exc}") from exc
    client.normalise_times = False  # INTERNALDATE as an aware datetime, not naive local time
    try:
        return _read(client, account, _since(last_check, first_lookback_days), known or (lambda ids: ()))
    except (imaplib.IMAP4.error, OSError) as exc:  # imapclient's errors derive from imaplib's
        raise ImapReadError(f"reading {account!r} failed: {exc}") from exc
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(imaplib.IMAP4.error, OSError):  # already closed
                client.shutdown()


def _read(
    client: IMAPClient, account: ImapAccount, since: date, known: Callable[[Sequence[str]], Collection[str]]
) -> list[Mail]:
    client.login(account.username, account.password)
    selected = client.select_folder(account.folder, readonly=True)
    uidvalidity = int(selected.get(b"UIDVALIDITY", 0) or 0)
    uids = sorted(int(uid) for uid in client.search(["SINCE", since]))
    mails: list[Mail] = []
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start : start + _CHUNK]
        mails.extend(mails_from_fetch(chunk, _fetch(client, chunk, _HEADER_ITEMS), uidvalidity, account.folder))
    skip = set(known([m.message_id for m in mails]))
    wanted = [m.uid for m in mails if m.message_id not in skip]
    bodies: dict[int, bytes] = {}
    for start in range(0, len(wanted), _BODY_CHUNK):
        chunk = wanted[start : start + _BODY_CHUNK]
        for uid, data in _fetch(client, chunk, _BODY_ITEMS).items():
            raw = _item(data, b"BODY[]")
            if not isinstance(raw, bytes):
                raise ImapReadError(f"FETCH of UID {uid} returned no message body")
            bodies[uid] = raw
    return [replace(m, raw=bodies[m.uid]) if m.uid in bodies else m for m in mails]


def _fetch(client: IMAPClient, uids: list[int], items: list[bytes]) -> dict[int, Mapping[bytes, Any]]:
    """``UID FETCH``, keyed by UID; a requested UID without its data is an error, never a skip."""
    response: dict[int, Mapping[bytes, Any]] = client.fetch(uids, items)
    missing = [uid for uid in uids if uid not in response]
    if missing:
        raise ImapReadError(f"FETCH returned no data for UIDs {missing[:10]} (of {len(uids)} asked)")
    return response


def _item(data: Mapping[bytes, Any], prefix: bytes) -> Any:
    """The value of the FETCH item whose name starts with ``prefix`` (servers echo the section their way)."""
    for name, value in data.items():
        if isinstance(name, bytes) and name.upper().startswith(prefix):
            return value
    return None


def mails_from_fetch(
    uids: Sequence[int], response: Mapping[int, Mapping[bytes, Any]], uidvalidity: int, folder: str
) -> list[Mail]:
    """``Mail`` headers from a FETCH of ``_HEADER_ITEMS`` (imapclient's parse, keyed by UID)."""
    parser = BytesHeaderParser()
    mails: list[Mail] = []
    for uid in uids:
        data = response.get(uid)
        if data is None:
            raise ImapReadError(f"FETCH returned no data for UID {uid}")
        raw_headers = _item(data, b"BODY[HEADER")
        if not isinstance(raw_headers, bytes):
            raise ImapReadError(f"FETCH of UID {uid} returned no headers")
        headers = parser.parsebytes(raw_headers)
        message_id = (headers.get("Message-ID") or "").strip()
        received = data.get(b"INTERNALDATE")
        mails.append(
            Mail(
                # A mail without a Message-ID is still processed once: UIDVALIDITY + UID is stable.
                message_id=message_id or f"<uid-{uidvalidity}.{uid}@{folder}>",
                subject=_text(headers.get("Subject"))[:500],
                sender=_text(headers.get("From"))[:500],
                received_at=received.astimezone(UTC) if isinstance(received, datetime) and received.tzinfo else None,
                uid=uid,
                size=int(data.get(b"RFC822.SIZE") or 0),
            )
        )
    return mails
