"""Standard Webhooks (https://www.standardwebhooks.com), which Svix and others send.

Route: ``POST /webhooks/standard/{source}``; each source has its own secret(s).
Auth: ``webhook-signature`` holds space-separated ``v1,<base64>`` signatures
(several during the sender's key rotation) of HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` with the base64 key after ``whsec_``;
``webhook-timestamp`` must be within 5 minutes of now, both ways.
Svix's ``svix-id`` / ``svix-timestamp`` / ``svix-signature`` are read when the
``webhook-`` ones are absent. Dedup: ``webhook-id`` per source. Timing: Svix retries for about 28 hours
(immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h): the window is 3 days.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets as secrets_module
from collections.abc import Mapping, Sequence
from typing import Any

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.adapters.envelope import MAX_ID, json_object
from exactly_once.ingest.adapters.signing import (
    SYSTEM_CLOCK,
    Clock,
    check_timestamp,
    decode_b64,
    hmac_sha256,
    matches_any,
    require,
)
from exactly_once.ingest.apigw import Request

KEY_PREFIX = "whsec_"  # how every Standard Webhooks secret starts
TOLERANCE_SECONDS = 5 * 60
_SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (padding is optional, as in the reference package)."""
    text = secret.strip()
    text = text.removeprefix(KEY_PREFIX)
    try:
        key = base64.b64decode(text + "==")
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("a Standard Webhooks secret must be whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ConfigurationError("a Standard Webhooks secret must hold at least 16 bytes")
    return key


def parse_secrets(document: str | Mapping[str, Any]) -> dict[str, list[bytes]]:
    """``{"source": "whsec_..."}`` or ``{"source": ["whsec_new", "whsec_old"]}`` -> keys per source."""
    try:
        data = json.loads(document) if isinstance(document, str) else document
    except ValueError as exc:
        raise ConfigurationError("STANDARD_WEBHOOK_SECRETS must be a JSON object") from exc
    if not isinstance(data, Mapping) or not data:
        raise ConfigurationError("STANDARD_WEBHOOK_SECRETS must map at least one source to its secret")
    keys: dict[str, list[bytes]] = {}
    for source, value in data.items():
        if not isinstance(source, str) or not _SOURCE.match(source):
            raise ConfigurationError(f"source name {source!r} must match {_SOURCE.pattern}")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise ConfigurationError(f"source {source!r} needs a secret or a list of secrets")
        keys[source] = [decode_secret(v) for v in values]
    return keys


def _header(request: Request, name: str) -> str | None:
    """``webhook-<name>``, else Svix's own ``svix-<name>`` (Svix sends its prefix; its libraries read both)."""
    return request.header(f"webhook-{name}") or request.header(f"svix-{name}")


class StandardWebhooksAdapter(WebhookAdapter):
    provider = "standard"
    accepted_status = 200
    content_types = ("application/json",)

    def __init__(
        self,
        secrets: Mapping[str, Sequence[bytes]],
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        dedup_window_seconds: int = 3 * 24 * 3600,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not secrets:
            raise ConfigurationError("Standard Webhooks needs at least one source with a secret")
        self._keys = {source: list(keys) for source, keys in secrets.items()}
        # An unknown source is checked against a random key no sender has: it gets the very answer a wrong
        # signature gets (a 404 told a scanner which source names are configured; issue 16).
        self._decoy = [secrets_module.token_bytes(32)]
        self._tolerance = tolerance_seconds
        self._clock = clock
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> StandardWebhooksAdapter:
        return cls(
            parse_secrets(get_secret("STANDARD_WEBHOOK_SECRETS")),
            dedup_window_seconds=env_int("STANDARD_DEDUP_WINDOW_SECONDS", 3 * 24 * 3600),
        )

    def source(self, request: Request) -> str:
        """``{source}`` from the route (API Gateway's path parameter, else the path's last segment)."""
        return request.path_params.get("source") or request.path.rstrip("/").rsplit("/", 1)[-1]

    def authenticate(self, request: Request) -> None:
        source = self.source(request)
        keys = self._keys.get(source, self._decoy) if _SOURCE.match(source) else self._decoy
        webhook_id = _header(request, "id")
        signatures = _header(request, "signature")
        if not webhook_id or not signatures:
            raise UnauthorizedError("webhook-id and webhook-signature are required", code="missing_signature")
        if len(webhook_id) > MAX_ID:
            raise UnauthorizedError(f"webhook-id is longer than {MAX_ID} characters", code="invalid_webhook_id")
        stamp = check_timestamp(
            _header(request, "timestamp"), now=self._clock(), tolerance=self._tolerance, name="webhook-timestamp"
        )
        signed = f"{webhook_id}.{stamp}.".encode() + request.raw_body
        given = [
            sig
            for version, _, value in (part.partition(",") for part in signatures.split())
            if version == "v1" and (sig := decode_b64(value)) is not None
        ]
        require(matches_any((hmac_sha256(key, signed) for key in keys), given), "no webhook-signature matches")

    def split(self, request: Request) -> Split:
        source = self.source(request)
        webhook_id = str(_header(request, "id"))
        key = f"standard:{source}:{webhook_id}"
        # No entity is known across senders: each event is its own group, so none waits for another.
        group = group_id("standard", source, webhook_id)
        body = json_object(request.raw_body)
        if body is None:
            reason = "body is not a JSON object"
            return Split(events=[unreadable_event("standard", request.raw_body, reason, key=key, group=group)])
        kind = body.get("type") if isinstance(body.get("type"), str) and body.get("type") else "unknown"
        payload = {
            "source": source,
            "webhook_id": webhook_id,
            "timestamp": int(str(_header(request, "timestamp")).strip()),
            "body": body,
        }
        return Split(events=[InboundEvent("standard", key, group, str(kind), payload)])
