"""Settings from the environment, failing with a clear ConfigurationError when one is missing or malformed.

Handlers read what they need at init (a missing setting fails the cold start, not a request); a few
values are read per call on purpose, so a test or the local stack can change them without a restart
(lease lengths, grace periods, reconcile budgets: ``env_int`` is a dictionary lookup).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from exactly_once.core.errors import ConfigurationError


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def env_flag(name: str) -> bool:
    """True only for an explicit yes (``1``, ``true``, ``yes``): a flag that loosens a check is off by default."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class IngestSettings:
    """What every webhook ingest function needs."""

    idempotency_table: str
    events_queue_url: str
    max_body_bytes: int
    # How long a delivery waits for another delivery holding the same key before answering 503.
    in_progress_wait_ms: int = 1000

    @classmethod
    def from_env(cls) -> IngestSettings:
        return cls(
            idempotency_table=env("IDEMPOTENCY_TABLE"),
            events_queue_url=env("EVENTS_QUEUE_URL"),
            max_body_bytes=env_int("MAX_BODY_BYTES", 1_048_576),
            in_progress_wait_ms=env_int("INGEST_IN_PROGRESS_WAIT_MS", 1000),
        )
