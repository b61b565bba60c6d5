"""Forwarding (issue 18, item 10): each settled event, once, to a downstream endpoint, signed with Standard Webhooks.

With ``FORWARD_URL`` set, the event worker queues one send on the internal channel ``forward`` for every
event it settles (``FORWARD_PROVIDERS``, comma-separated, limits it to those providers), under the
idempotency key ``forward:<webhook id>``: a re-delivered event, a duplicate, a replay all find the send
already queued. The send queue then does what it does for every send: the outbox relays it, one claim
at a time, a fenced completion, reconciliation of an unknown outcome, the sweeper, the DLQ.

Each delivery carries ``webhook-id`` (the event key: the receiver dedups on it), ``webhook-timestamp``
(when this attempt left) and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
``id.timestamp.body`` with ``FORWARD_SIGNING_SECRET``, ``whsec_`` and base64 as the Standard Webhooks
specification has it). A delivery whose outcome is unknown is sent again with the same id (the policy is
``at_least_once``: the receiver's dedup makes a resend safe), never held for review. The body::

    {"type": "<provider>.<kind>", "timestamp": "<received, ISO 8601 UTC>",
     "data": {"provider": ..., "kind": ..., "key": ..., "group": ..., "payload": {...}}}

It holds nothing of one delivery of the event (no outcome, no attempt): every copy of an event queues
the same send, and a key reused with another body is already queued (docs/forwarding.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg

from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.core.events import QUARANTINE_KIND, InboundEvent
from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.queries import q
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import logger
from exactly_once.sends import queue as send_queue
from exactly_once.sends.channels import DEFAULT_RATE_LIMIT_WAIT, FindResult, Unknowable
from exactly_once.sends.queue import SendClaim
from exactly_once.sends.request import SendRequest
from exactly_once.sends.unipile_api import SentMessage

CHANNEL = "forward"
POLICY = "at_least_once"  # the receiver dedups on webhook-id: a resend after an unknown outcome is safe
#: Forwards of one provider spread over this many sender accounts (FIFO groups and pacing rows), by the
#: event's group: one entity's events stay in order, different entities go in parallel.
SHARDS = 16
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_PLAIN_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # what a header carries as it is


# -- configuration ----------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The endpoint, or ConfigurationError: https only (plain http to a loopback address, for tests)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigurationError("FORWARD_URL must be an absolute https URL")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return url
    raise ConfigurationError("FORWARD_URL must use https (plain http only to a loopback address)")


@dataclass(frozen=True)
class ForwardConfig:
    url: str
    providers: frozenset[str]  # empty: every provider

    @classmethod
    def from_env(cls) -> ForwardConfig | None:
        """None when forwarding is off (``FORWARD_URL`` empty, the default)."""
        url = os.environ.get("FORWARD_URL", "").strip()
        if not url:
            return None
        names = os.environ.get("FORWARD_PROVIDERS", "")
        return cls(check_url(url), frozenset(p.strip() for p in names.split(",") if p.strip()))

    def forwards(self, event: InboundEvent, outcome: str) -> bool:
        """Settled (anything but quarantined) and of a forwarded provider."""
        if event.kind == QUARANTINE_KIND or outcome.endswith("quarantined"):
            return False
        return not self.providers or event.provider in self.providers


# -- what is queued ---------------------------------------------------------------------------


def webhook_id(event_key: str) -> str:
    """The event key as the receiver sees it in ``webhook-id``: as it is when a header can carry it
    (printable ASCII, at most 256 characters), else ``sha256:`` and its hash (the same every time)."""
    if _PLAIN_ID.match(event_key):
        return event_key
    return "sha256:" + hashlib.sha256(event_key.encode("utf-8", "surrogatepass")).hexdigest()


def forward_key(event_key: str) -> str:
    """The send queue's idempotency key of an event's one forward."""
    return f"forward:{webhook_id(event_key)}"


def body_of(event: InboundEvent) -> dict[str, Any]:
    """What the receiver gets: the same for every copy of the event."""
    return {
        "type": f"{event.provider}.{event.kind}",
        "timestamp": datetime.fromtimestamp(event.received_at, tz=UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "provider": event.provider,
            "kind": event.kind,
            "key": event.key,
            "group": event.group,
            "payload": event.payload,
        },
    }


def request_for(event: InboundEvent) -> SendRequest:
    shard = int(hashlib.sha256(event.group.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % SHARDS
    return SendRequest(
        idempotency_key=forward_key(event.key),
        channel=CHANNEL,
        sender_account=f"{event.provider}:{shard:02d}",
        recipient=webhook_id(event.key),  # one recipient per event: the recipient-repeat watch stays quiet
        payload=body_of(event),
        policy=POLICY,
    )


def enqueue(conn: psycopg.Connection[Any], event: InboundEvent, outcome: str) -> int | None:
    """Queue the forward of a settled event (one statement, idempotent); the id to relay, if created.

    Called after the event's own transaction: a crash in between leaves the queue message undeleted,
    and its re-delivery is settled as a duplicate and reaches this line again (``forward.after_settle``).
    An error here fails the message for the same reason, never drops the forward.
    """
    config = ForwardConfig.from_env()
    if config is None or not config.forwards(event, outcome):
        return None
    crashpoint("forward.after_settle")
    try:
        queued = send_queue.enqueue(conn, request_for(event))
    except send_queue.IdempotencyConflictError as exc:
        # The provider sent the event again, changed (after the ingest window): the first copy's forward stands.
        logger.info("forward already queued with another body", extra={"send_id": exc.existing_id})
        return None
    crashpoint("forward.after_enqueue")
    return queued.id if queued.created else None


def replay(conn: psycopg.Connection[Any], send_ids: Sequence[int] | None = None, *, note: str, by: str) -> list[int]:
    """The operator's replay: forwards that failed or wait in review (all, or ``send_ids``) are pending
    again with fresh attempts (one statement); the ids, to ``send_queue.relay`` after (else the sweeper)."""
    params = {"ids": None if send_ids is None else list(send_ids), "note": note[:2000], "by": by}
    ids = [int(r[0]) for r in conn.execute(q("forward_replay"), params).fetchall()]
    logger.info("forwards replayed", extra={"send_ids": ids, "by": by})
    return ids


# -- signing (Standard Webhooks) -----------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (the prefix optional, as the reference libraries take it)."""
    try:
        key = base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("FORWARD_SIGNING_SECRET must be whsec_ and base64 (Standard Webhooks)") from exc
    if len(key) < 16:
        raise ConfigurationError("FORWARD_SIGNING_SECRET must hold at least 16 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(key, msg_id, stamp, body),
    }


# -- the sender -----------------------------------------------------------------------------------


class ForwardSender:
    """POST the queued body to ``FORWARD_URL``, signed at each attempt (the timestamp is the attempt's).

    The endpoint and the secret are read at the first send, not when the sender is built: the
    reconciler builds every channel's sender and needs neither (``find`` asks nobody).
    """

    channel = CHANNEL

    def __init__(self, url: str | None = None, secret: str | None = None, *, read_timeout: float = 10.0) -> None:
        self._url, self._secret, self._read_timeout = url, secret, read_timeout
        self._target: tuple[str, bytes, HttpClient] | None = None

    @classmethod
    def from_env(cls) -> ForwardSender:
        return cls(read_timeout=float(env_int("SEND_PROVIDER_TIMEOUT_SECONDS", 10)))

    def _endpoint(self) -> tuple[str, bytes, HttpClient]:
        if self._target is None:
            url = check_url(self._url or os.environ.get("FORWARD_URL", "").strip())
            key = signing_key(self._secret or get_secret("FORWARD_SIGNING_SECRET"))
            # One attempt per claim (a failed connect retried): the queue retries, under its lease.
            self._target = (url, key, HttpClient(url, read_timeout=self._read_timeout, retries=2))
        return self._target

    def send(self, claim: SendClaim) -> SentMessage:
        url, key, http = self._endpoint()
        body = json.dumps(claim.payload, separators=(",", ":"), ensure_ascii=False).encode()
        http.request("POST", url, body=body, headers=signed_headers(key, claim.recipient, body), idempotent=False)
        return SentMessage(claim.recipient)  # the ledger's id: the webhook id, one per event

    def find(self, claim: SendClaim) -> FindResult:
        return Unknowable()  # a receiver has no list of what it got: at_least_once sends it again

    def rate_limit(self, error: ProviderCallError) -> float | None:
        if error.status == 429:
            return error.retry_after or DEFAULT_RATE_LIMIT_WAIT
        return None
