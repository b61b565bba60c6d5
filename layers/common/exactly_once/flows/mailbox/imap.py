"""Reading a user's mailbox over IMAP (imaplib): one connection, opened, read, closed.

The worker fetches only headers (Message-ID, Subject, From) of the mails since the
user's ``last_check_time``, over ONE connection that is closed before any effect is
written, so a job holds its IMAP connection for as short a time as possible.
IMAP's SEARCH SINCE has day granularity (in the server's time zone): the search
starts a day before ``last_check_time`` and ``processed_mails`` drops what was seen.

TLS: the connection verifies the server's certificate and host name against the system's CAs
(``ssl.create_default_context``; imaplib's own default checks nothing, so anyone on the path could
pose as the server and read the password at LOGIN). Plaintext IMAP is refused with an
``ImapConfigurationError`` unless the account allows it, which only the local stack and the
dovecot tests do (``MAILBOX_ALLOW_PLAINTEXT_IMAP``; the template never sets it).
"""

from __future__ import annotations

import email.header
import email.utils
import imaplib
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser

from exactly_once.core.errors import ConfigurationError

_FETCH_ITEMS = "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM)])"
_UID = re.compile(rb"UID (\d+)")
_CHUNK = 200


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


def _internaldate(meta: bytes) -> datetime | None:
    parsed = imaplib.Internaldate2tuple(meta)
    if parsed is None:
        return None
    import calendar

    return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)


def search_since(last_check: datetime | None, first_lookback_days: int) -> str:
    """The SEARCH SINCE date: a day before the last check (day granularity), or the first lookback."""
    start = (last_check - timedelta(days=1)) if last_check else datetime.now(UTC) - timedelta(days=first_lookback_days)
    return start.strftime("%d-%b-%Y")


def fetch_since(account: ImapAccount, last_check: datetime | None, *, first_lookback_days: int = 7) -> list[Mail]:
    """Headers of the mails since ``last_check``, over one connection that is always closed."""
    if not account.use_ssl and not account.allow_plaintext:
        raise ImapConfigurationError(
            f"plaintext IMAP to {account.host}:{account.port} is refused (the password would cross the network"
            " in clear): set imap_ssl, or MAILBOX_ALLOW_PLAINTEXT_IMAP=true for local development only"
        )
    try:
        if account.use_ssl:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                account.host, account.port, ssl_context=tls_context(), timeout=account.timeout
            )
        else:
            client = imaplib.IMAP4(account.host, account.port, timeout=account.timeout)
    except OSError as exc:
        raise ImapReadError(f"cannot connect to {account.host}:{account.port}: {exc}") from exc
    try:
        return _read(client, account, search_since(last_check, first_lookback_days))
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ImapReadError(f"reading {account!r} failed: {exc}") from exc
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            client.shutdown()


def _read(client: imaplib.IMAP4, account: ImapAccount, since: str) -> list[Mail]:
    client.login(account.username, account.password)
    typ, _ = client.select(account.folder, readonly=True)
    if typ != "OK":
        raise ImapReadError(f"cannot select {account.folder}")
    _, validity = client.response("UIDVALIDITY")
    uidvalidity = (validity[0] or b"0").decode() if validity and validity[0] else "0"
    typ, data = client.uid("SEARCH", "SINCE", since)
    if typ != "OK":
        raise ImapReadError(f"SEARCH failed: {data!r}")
    uids = (data[0] or b"").split()
    mails: list[Mail] = []
    parser = BytesHeaderParser()
    for start in range(0, len(uids), _CHUNK):
        typ, parts = client.uid("FETCH", b",".join(uids[start : start + _CHUNK]).decode(), _FETCH_ITEMS)
        if typ != "OK":
            raise ImapReadError(f"FETCH failed: {parts!r}")
        for part in parts:
            if not isinstance(part, tuple):
                continue  # the closing ")" of each message
            meta, raw_headers = part
            uid_match = _UID.search(meta)
            if not uid_match:
                continue
            uid = int(uid_match.group(1))
            headers = parser.parsebytes(raw_headers)
            message_id = (headers.get("Message-ID") or "").strip()
            mails.append(
                Mail(
                    # A mail without a Message-ID is still processed once: UIDVALIDITY + UID is stable.
                    message_id=message_id or f"<uid-{uidvalidity}.{uid}@{account.folder}>",
                    subject=_text(headers.get("Subject"))[:500],
                    sender=_text(headers.get("From"))[:500],
                    received_at=_internaldate(meta),
                    uid=uid,
                )
            )
    return mails
