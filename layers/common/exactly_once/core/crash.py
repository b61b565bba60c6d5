"""Named crash points at the boundaries of every flow, for the crash-injection suite.

``crashpoint("graph.after_dedup")`` does nothing unless the process was started
with ``EO_CRASH_AT`` naming that point; then the process kills itself with SIGKILL
(not an exception: no finally blocks, no rollback handlers, no clean shutdown),
as a Lambda sandbox that times out or runs out of memory would. ``EO_CRASH_AT``
is read once at import; it is never set in a deployment.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("EO_CRASH_AT", "").split(",")))


def crashpoint(name: str) -> None:
    if _ARMED and name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
