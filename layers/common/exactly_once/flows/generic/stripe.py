"""Stripe webhooks.

Auth: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` where each ``v1`` is
HMAC-SHA256 over ``{t}.{body}`` keyed with the endpoint secret (the whole
``whsec_...`` string). While a secret is being rolled Stripe signs with every
active secret, so a header carries several ``v1``; one match suffices.
``t`` must be within 300 s of now (Stripe's SDK checks only the past; a
future timestamp is refused here too). ``v0`` (test-mode) signatures are ignored.
Dedup: ``event.id``. Timing: Stripe retries live-mode events for up to 3 days:
the window is 4 days.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.adapters.envelope import id_part, json_object
from exactly_once.ingest.adapters.signing import (
    SYSTEM_CLOCK,
    Clock,
    check_timestamp,
    decode_hex,
    hmac_sha256,
    matches_any,
    require,
)
from exactly_once.ingest.apigw import Request

TOLERANCE_SECONDS = 300
_SEPARATORS = re.compile(r"[\s,]+")


def parse_signature_header(header: str) -> tuple[str | None, list[str]]:
    """(``t``, every ``v1``) of a ``Stripe-Signature`` header; ``t`` is None when absent or repeated."""
    stamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            signatures.append(value)
    return (stamps[0] if len(stamps) == 1 else None), signatures


class StripeAdapter(WebhookAdapter):
    provider = "stripe"
    accepted_status = 200
    content_types = ("application/json",)

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        dedup_window_seconds: int = 4 * 24 * 3600,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        keys = [s for s in secrets if s]
        if not keys:
            raise ConfigurationError("STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_... secret)")
        self._keys = [k.encode() for k in keys]
        self._tolerance = tolerance_seconds
        self._clock = clock
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> StripeAdapter:
        # Several secrets (comma or space separated) let two endpoints' secrets, or an old and a new one, coexist.
        return cls(
            _SEPARATORS.split(get_secret("STRIPE_WEBHOOK_SECRET").strip()),
            dedup_window_seconds=env_int("STRIPE_DEDUP_WINDOW_SECONDS", 4 * 24 * 3600),
        )

    def authenticate(self, request: Request) -> None:
        header = request.header("stripe-signature")
        if not header:
            raise UnauthorizedError("Stripe-Signature is missing", code="missing_signature")
        stamp_text, signatures = parse_signature_header(header)
        if stamp_text is None or not signatures:
            raise UnauthorizedError("Stripe-Signature needs one t= and at least one v1=", code="invalid_signature")
        stamp = check_timestamp(stamp_text, now=self._clock(), tolerance=self._tolerance, name="Stripe-Signature t")
        signed = f"{stamp}.".encode() + request.raw_body
        given = [sig for sig in (decode_hex(s) for s in signatures) if sig is not None]
        require(matches_any((hmac_sha256(key, signed) for key in self._keys), given), "no v1 signature matches")

    def split(self, request: Request) -> Split:
        body = json_object(request.raw_body)
        event_id = id_part(body.get("id")) if body is not None else None
        if body is None or event_id is None:
            reason = "body is not a Stripe event (a JSON object with an id)"
            return Split(events=[unreadable_event("stripe", request.raw_body, reason)])
        data = body.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        object_id = id_part(obj.get("id")) if isinstance(obj, dict) else None
        # One object's events (a payment intent's) in order; other objects in parallel.
        group = group_id("stripe", body.get("account") or "", object_id or event_id)
        kind = body.get("type") if isinstance(body.get("type"), str) and body.get("type") else "unknown"
        return Split(events=[InboundEvent("stripe", f"stripe:{event_id}", group, str(kind), body)])
