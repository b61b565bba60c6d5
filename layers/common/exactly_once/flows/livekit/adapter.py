"""LiveKit webhooks (room_finished, participant_joined, egress_ended, ...).

No handshake. ``Authorization`` is a bare JWT (HS256 with the API secret, ``iss`` = the API
key, ``nbf``/``exp`` five minutes apart) whose ``sha256`` claim is the standard base64 of
SHA-256 over the exact raw body: the token is verified with PyJWT, the body hashed as
received and compared in constant time. One event per POST; dedup on its ``id``; the FIFO
group is the room, so one room's events stay in order. LiveKit drops events queued more
than 30 s behind a slow answer, hence ingest only verifies, dedups and enqueues.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import jwt

from exactly_once.core.errors import BadRequestError, ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import QuarantinedBadRequestError, Split, WebhookAdapter, secrets_equal
from exactly_once.ingest.apigw import Request

PROVIDER = "livekit"
_MAX_TOKEN = 8192
#: HS256 keys shorter than the hash (RFC 7518 3.2) can be brute-forced from one captured token.
MIN_SECRET_BYTES = 32
#: LiveKit's tokens live 5 minutes; one valid for longer than this is refused (issue 16): a leaked
#: signing secret or a token minted for another purpose must not open a replay window of years.
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600


def body_sha256(raw: bytes) -> str:
    """The ``sha256`` claim LiveKit puts in the token: standard base64 (with padding) of the digest."""
    return base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii")


def room_group(body: dict[str, Any]) -> str:
    """The FIFO group: the room's sid (or name), found where each event type carries it."""
    room, egress, ingress = (_object(body, k) for k in ("room", "egressInfo", "ingressInfo"))
    candidates = (
        room.get("sid"),
        egress.get("roomId"),
        room.get("name"),
        egress.get("roomName"),
        ingress.get("roomName"),
    )
    for value in candidates:
        if isinstance(value, str) and value:
            return f"livekit:room:{value}"
    return "livekit:room:none"


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


class LiveKitAdapter(WebhookAdapter):
    provider = PROVIDER
    accepted_status = 200
    content_types = ("application/webhook+json", "application/json")

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        leeway_seconds: int = 10,
        dedup_window_seconds: int = 24 * 3600,
        max_token_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        if len(api_secret.encode("utf-8")) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"LIVEKIT_API_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256 key); generate a new key pair"
            )
        self._max_lifetime = max_token_lifetime_seconds
        self._api_key = api_key
        self._api_secret = api_secret
        self._leeway = leeway_seconds
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> LiveKitAdapter:
        return cls(
            get_secret("LIVEKIT_API_KEY"),
            get_secret("LIVEKIT_API_SECRET"),
            leeway_seconds=env_int("LIVEKIT_TOKEN_LEEWAY_SECONDS", 10),
            dedup_window_seconds=env_int("LIVEKIT_DEDUP_WINDOW_SECONDS", 24 * 3600),
            max_token_lifetime_seconds=env_int("LIVEKIT_MAX_TOKEN_LIFETIME_SECONDS", MAX_TOKEN_LIFETIME_SECONDS),
        )

    def authenticate(self, request: Request) -> None:
        token = (request.header("authorization") or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()  # LiveKit sends the bare token; a proxy may have added the scheme
        if not token:
            raise UnauthorizedError("missing Authorization token", code="missing_token")
        if len(token) > _MAX_TOKEN:
            raise UnauthorizedError("Authorization token too long", code="invalid_token")
        try:
            claims = jwt.decode(
                token,
                self._api_secret,
                algorithms=["HS256"],  # never "none", never an algorithm the token picks
                issuer=self._api_key,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "sha256"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid token: {type(exc).__name__}", code="invalid_token") from exc
        # "exp" is required and numeric (PyJWT checked it); how far ahead it lies is ours to bound.
        if float(claims["exp"]) - time.time() > self._max_lifetime + self._leeway:
            raise UnauthorizedError("token lives longer than allowed", code="token_lifetime")
        claimed = claims.get("sha256")
        if not isinstance(claimed, str) or not secrets_equal(claimed, body_sha256(request.raw_body)):
            raise UnauthorizedError("body does not match the token's sha256", code="body_hash_mismatch")

    def split(self, request: Request) -> Split:
        try:
            body = request.json()
        except BadRequestError as exc:
            # Signed by LiveKit yet unreadable: keep the bytes (quarantine), then refuse.
            event = unreadable_event(PROVIDER, request.raw_body, f"malformed JSON: {exc.message}")
            raise QuarantinedBadRequestError(exc.message, event, code=exc.code) from exc
        if not isinstance(body, dict):
            event = unreadable_event(PROVIDER, request.raw_body, "body is not a JSON object")
            raise QuarantinedBadRequestError("body must be a JSON object", event, code="invalid_body")
        event_id, kind = body.get("id"), body.get("event")
        if not (isinstance(event_id, str) and event_id and isinstance(kind, str) and kind):
            # Authentic but not an event we can key: kept for a person, acknowledged so LiveKit stops.
            reason = "event without id or event type"
            return Split(events=[unreadable_event(PROVIDER, request.raw_body, reason, group=room_group(body))])
        return Split(events=[InboundEvent(PROVIDER, f"livekit:{event_id}", room_group(body), kind, body)])
