"""The adapter interface: adding a provider is one small module implementing it."""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from exactly_once.core.errors import BadRequestError, UnsupportedMediaTypeError
from exactly_once.core.events import InboundEvent
from exactly_once.ingest.apigw import Request, json_response


@dataclass
class Split:
    """What one delivery holds: events to dedup and enqueue, and items refused per item."""

    events: list[InboundEvent] = field(default_factory=list)
    rejected: int = 0  # items that failed per-item authentication (Graph clientState)


class QuarantinedBadRequestError(BadRequestError):
    """An authenticated body that cannot be read: the pipeline enqueues ``event`` (the raw body,
    for the worker's quarantine) before answering 400, so nothing the provider signed is lost."""

    def __init__(self, message: str, event: InboundEvent, code: str = "invalid_json") -> None:
        super().__init__(message, code=code)
        self.event = event


class WebhookAdapter(ABC):
    """One provider's webhook protocol.

    The ingest pipeline calls, in order: ``handshake`` (may answer on its own),
    ``check_content_type``, ``authenticate`` (raises 401 on the raw bytes),
    ``split`` (events with their dedup key and message group), then dedups each
    event for ``dedup_window_seconds`` and enqueues the new ones.
    """

    provider: str
    #: How long duplicates are remembered at ingest; longer than the provider retries.
    dedup_window_seconds: int = 24 * 3600
    #: The status a provider takes as "delivered" (Meta: only 200).
    accepted_status: int = 202
    #: Accepted media types (the part before ";"), or empty for any.
    content_types: tuple[str, ...] = ("application/json",)
    #: The largest body it takes; None: the stack's MAX_BODY_BYTES (IngestSettings).
    max_body_bytes: int | None = None
    #: How many of one delivery's events are deduped at once (Meta batches up to 1000 per POST).
    dedup_workers: int = 1

    @classmethod
    def from_env(cls) -> WebhookAdapter:
        """The adapter with its secrets and settings (``Provider.adapter`` names this)."""
        raise NotImplementedError(f"{cls.__name__} has no from_env")

    def handshake(self, request: Request) -> dict[str, Any] | None:
        """Answer a subscription handshake, or None for an ordinary delivery."""
        return None

    def check_content_type(self, request: Request) -> None:
        if not self.content_types:
            return
        media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media not in self.content_types:
            raise UnsupportedMediaTypeError(f"content-type must be one of {', '.join(self.content_types)}")

    @abstractmethod
    def authenticate(self, request: Request) -> None:
        """Raise UnauthorizedError unless the raw request is the provider's."""

    @abstractmethod
    def split(self, request: Request) -> Split:
        """Split an authenticated delivery into events (raise BadRequestError if malformed)."""

    def accepted(self, accepted: int, duplicates: int, rejected: int) -> dict[str, Any]:
        return json_response(
            self.accepted_status, {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        )


def secrets_equal(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time comparison that treats a missing value as a mismatch."""
    if given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)
