"""Named crash points at the boundaries of every flow, for the crash-injection suite.

``crashpoint("graph.after_dedup")`` does nothing unless the process was started
with ``EO_CRASH_AT`` naming that point; then the process kills itself with SIGKILL
(not an exception: no finally blocks, no rollback handlers, no clean shutdown),
as a Lambda sandbox that times out or runs out of memory would. ``EO_CRASH_AT``
is read once at import; it is never set in a deployment.

Before the kill, when ``EO_CRASH_MARKERS`` names a directory, the process writes
``<pid>.json`` there: the crashpoint's name and the file, function and line of its
call site, so a test knows the process died where it was armed (and not of a hang
or another signal).
"""

from __future__ import annotations

import json
import os
import signal
import sys

_ARMED = frozenset(filter(None, os.environ.get("EO_CRASH_AT", "").split(",")))


def crashpoint(name: str) -> None:
    if _ARMED and name in _ARMED:
        _mark(name)
        os.kill(os.getpid(), signal.SIGKILL)


def _mark(name: str) -> None:
    markers = os.environ.get("EO_CRASH_MARKERS")
    if not markers:
        return
    site = sys._getframe(2).f_code  # the caller of crashpoint()
    line = sys._getframe(2).f_lineno
    doc = {"name": name, "file": site.co_filename, "function": site.co_qualname, "line": line, "pid": os.getpid()}
    path = os.path.join(markers, f"{os.getpid()}.json")
    with open(f"{path}.tmp", "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(f"{path}.tmp", path)
