"""A mail as a processor sees it: headers, the text and HTML bodies, the attachments' metadata.

Parsed from the RFC 5322 bytes the IMAP read returned (``email`` with the modern policy: encoded
words, transfer encodings and charsets decoded). Attachments are described (name, type, size),
their content stays in ``raw``. Parsing never raises on a malformed mail: a header or a part that
cannot be decoded is read leniently (replacement characters), and what the processor makes of it
is its decision.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # decoded bytes
    disposition: str | None  # attachment, inline, or None
    content_id: str | None


@dataclass(frozen=True)
class ParsedMail:
    user_id: str
    message_id: str
    uid: int
    received_at: datetime | None
    subject: str
    sender: str
    headers: tuple[tuple[str, str], ...]  # every header, in order, decoded
    text: str | None  # the text/plain body
    html: str | None  # the text/html body
    attachments: tuple[Attachment, ...]
    raw: bytes  # the whole message as the server sent it

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), decoded."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def parse(
    raw: bytes,
    *,
    user_id: str,
    message_id: str,
    uid: int,
    received_at: datetime | None,
    subject: str,
    sender: str,
) -> ParsedMail:
    """The mail's parts. ``message_id``, ``subject`` and ``sender`` are the ones the job keyed it by."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    if not isinstance(message, EmailMessage):  # the default policy's message class: never another
        raise TypeError("email.policy.default parsed into an unexpected message class")
    text_part = _body(message, "plain")
    html_part = _body(message, "html")
    attachments = tuple(
        _describe(part)
        for part in message.walk()
        if not part.is_multipart() and part is not text_part and part is not html_part
    )
    return ParsedMail(
        user_id=user_id,
        message_id=message_id,
        uid=uid,
        received_at=received_at,
        subject=subject,
        sender=sender,
        headers=tuple((key, _header(value)) for key, value in message.items()),
        text=_content(text_part),
        html=_content(html_part),
        attachments=attachments,
        raw=raw,
    )


def _body(message: EmailMessage, subtype: str) -> EmailMessage | None:
    try:
        part = message.get_body(preferencelist=(subtype,))
    except (KeyError, LookupError, ValueError):
        return None
    return part if isinstance(part, EmailMessage) else None


def _header(value: object) -> str:
    try:
        return str(value)
    except (LookupError, ValueError):  # an undecodable encoded word
        return repr(value)


def _content(part: Message | None) -> str | None:
    if part is None:
        return None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", errors="replace")


def _describe(part: Message) -> Attachment:
    payload = part.get_payload(decode=True)
    return Attachment(
        filename=part.get_filename(),
        content_type=part.get_content_type(),
        size=len(payload) if isinstance(payload, bytes) else 0,
        disposition=part.get_content_disposition(),
        content_id=(part.get("Content-ID") or None) and str(part.get("Content-ID")).strip(),
    )
