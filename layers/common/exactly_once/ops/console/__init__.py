"""The operator console: a page (``GET /console``) and its JSON API (``/console/api/...``).

The API calls the same library functions as the ``exactly-once`` CLI (``ops.quarantine``,
``ops.trace``, ``sends.queue.resolve_review``, the mailbox trigger), so the CLI and the page
leave the same rows behind. Reads are bounded and paged; actions are POSTs carrying an
``Idempotency-Key`` (``actions``); every answer is redacted of secrets (``redact``).
"""

from __future__ import annotations

from exactly_once.ops.console.actions import ActionInProgressError, IdempotencyKeyReusedError
from exactly_once.ops.console.api import ConsoleApi, ConsoleSettings, NotFoundError
from exactly_once.ops.console.assets import asset_response

__all__ = [
    "ActionInProgressError",
    "ConsoleApi",
    "ConsoleSettings",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "asset_response",
]
