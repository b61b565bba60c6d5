"""Unipile webhooks (LinkedIn and other messaging accounts).

Auth: Unipile v1 webhooks are unsigned; the webhook is created with a static
header (``headers: [{"key": "X-Webhook-Secret", "value": <secret>}]``) that is
compared in constant time. No secret configured: the function refuses to start.
Body: one event per POST (``event``, ``account_id``, ``chat_id``, ``message_id``,
``sender``, ``account_info``). Dedup: (account, ``event``, ``message_id``);
events without a message id are keyed by a digest of the body.
Timing: Unipile retries 5 times when it gets no 200 within 30 s; duplicates are
remembered for 24 hours here, and for good in Postgres.
"""

from __future__ import annotations

import os
from typing import Any

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter, secrets_equal
from exactly_once.ingest.adapters.envelope import body_digest, id_part, json_object
from exactly_once.ingest.apigw import Request

DEFAULT_HEADER = "X-Webhook-Secret"
#: Shortest secret accepted: a guessable header value is no authentication at all.
MIN_SECRET_LENGTH = 16


class UnipileAdapter(WebhookAdapter):
    provider = "unipile"
    accepted_status = 200  # Unipile retries anything but a 200
    # Create the webhook with format "json" (the default); a missing content type is tolerated, not a form.
    content_types = ("application/json", "")

    def __init__(self, secret: str, header: str = DEFAULT_HEADER, dedup_window_seconds: int = 24 * 3600) -> None:
        if not secret:
            raise ConfigurationError("UNIPILE_WEBHOOK_SECRET is required: without it anyone could post events")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(f"UNIPILE_WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        if not header.strip():
            raise ConfigurationError("UNIPILE_WEBHOOK_HEADER must name a header")
        self._secret = secret
        self._header = header.strip().lower()
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> UnipileAdapter:
        return cls(
            get_secret("UNIPILE_WEBHOOK_SECRET"),
            header=os.environ.get("UNIPILE_WEBHOOK_HEADER") or DEFAULT_HEADER,
            dedup_window_seconds=env_int("UNIPILE_DEDUP_WINDOW_SECONDS", 24 * 3600),
        )

    def authenticate(self, request: Request) -> None:
        given = request.header(self._header)
        if given is None:
            raise UnauthorizedError(f"the {self._header} header is missing", code="missing_secret")
        if not secrets_equal(given, self._secret):
            raise UnauthorizedError(f"the {self._header} header does not match", code="invalid_secret")

    def split(self, request: Request) -> Split:
        body = json_object(request.raw_body)
        digest = body_digest(request.raw_body)
        if body is None:
            return Split(events=[unreadable_event("unipile", request.raw_body, "not a JSON object")])
        return Split(events=[self._event(body, digest)])

    def _event(self, body: dict[str, Any], digest: str) -> InboundEvent:
        account = id_part(body.get("account_id"))
        kind = body.get("event") if isinstance(body.get("event"), str) and body.get("event") else None
        if kind is None and isinstance(body.get("AccountStatus"), dict):
            # Account status webhooks wrap their fields in "AccountStatus" and carry no "event".
            kind = "account_status"
            account = id_part(body["AccountStatus"].get("account_id"))
        message = id_part(body.get("message_id"))
        if kind is not None and message is not None:
            key = f"unipile:{account or '-'}:{kind}:{message}"
        else:
            key = f"unipile:{account or '-'}:{kind or 'unknown'}:body:{digest}"
        chat = id_part(body.get("chat_id"))
        group = group_id("unipile", "chat", chat) if chat else group_id("unipile", "account", account or "unknown")
        return InboundEvent("unipile", key, group, kind or "unknown", body)
