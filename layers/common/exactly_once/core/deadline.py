"""The running invocation's deadline, for work that must not start when it could not finish.

The worker sets it from the Lambda context at the start of each invocation; code deep in a
processor asks ``remaining_s()`` before a slow call (a Graph fetch) and defers the event instead
of starting what the invocation's timeout would cut short. A context variable, not a global:
the local stack runs several containers' invocations in one process, one per thread.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("exactly_once_deadline", default=None)


def start(context: Any) -> None:
    """Take the deadline from a Lambda context (none when it has no remaining-time getter)."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    remaining = int(getter()) if callable(getter) else None
    _DEADLINE.set(None if remaining is None else time.monotonic() + remaining / 1000.0)


def remaining_s() -> float | None:
    """Seconds left in this invocation, or None outside one (tests, scripts: no limit)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def covers(seconds: float) -> bool:
    """Whether what is left of the invocation (if anything bounds it) covers ``seconds`` more work."""
    left = remaining_s()
    return left is None or left >= seconds
