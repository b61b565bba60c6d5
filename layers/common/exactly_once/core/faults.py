"""Fault injection at the AWS calls, for the chaos storms (``tests/chaos/``); inert unless ``EO_FAULTS`` is set.

``EO_FAULTS`` is never set by the template: only the test harness sets it, in the processes it spawns. It is
JSON: ``{"seed": 7, "rate": 0.05, "kinds": ["throttle", "500", "lost", "kill"], "log": "/tmp/dir"}``.
``install(client)`` (``core.aws`` calls it on every client it builds) then registers botocore event hooks
that, on each call, with probability ``rate``, inject one of ``kinds``:

- ``throttle``: the call is not made; ``ProvisionedThroughputExceededException`` (DynamoDB) or
  ``ThrottlingException`` (the rest), as a 400, after botocore's own retries gave up;
- ``500``: the call is not made; ``InternalServerError`` (DynamoDB) / ``InternalError`` (the rest), a 500;
- ``lost``: the call is made and applied (the item written, the message queued) and then the answer is lost:
  botocore's ``ReadTimeoutError``, as when the connection dies after AWS acted;
- ``kill``: the call is made and applied, then the process SIGKILLs itself: a death at a random moment,
  not at a named crashpoint.

The schedule is a hash of ``(seed, EO_FAULTS_STREAM, service, call number)``: one stream per process the
harness numbers, so a seed replays the same faults for the same sequence of calls. Each injected fault
is appended to ``<log>/<pid>.faults`` (``kind service operation``) before it takes effect, so the harness
counts them even in a process that killed itself. With ``EO_FAULTS`` unset ``install`` returns at once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
from typing import Any

KINDS = ("throttle", "500", "lost", "kill")
_THROTTLE = {"dynamodb": "ProvisionedThroughputExceededException"}
_INTERNAL = {"dynamodb": "InternalServerError", "secretsmanager": "InternalServiceError"}


class _Response:
    """What botocore reads of an HTTP response when a ``before-call`` hook answers instead of AWS."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""


class Injector:
    def __init__(self, spec: dict[str, Any], service: str) -> None:
        self.service = service
        self.rate = float(spec.get("rate", 0.0))
        self.kinds: tuple[str, ...] = tuple(str(k) for k in spec.get("kinds", KINDS) if k in KINDS)
        self.log = spec.get("log")
        self._stream = f"{spec.get('seed', 0)}:{os.environ.get('EO_FAULTS_STREAM', '0')}:{service}"
        self._calls = itertools.count()

    def draw(self) -> str | None:
        """The fault of the next call, if any: a hash of (seed, stream, service, call number), no shared state."""
        digest = hashlib.blake2b(f"{self._stream}:{next(self._calls)}".encode(), digest_size=8).digest()
        if not self.kinds or int.from_bytes(digest[:6]) / 2**48 >= self.rate:
            return None
        return self.kinds[digest[7] % len(self.kinds)]

    def note(self, kind: str, operation: str) -> None:
        if self.log:
            with open(os.path.join(self.log, f"{os.getpid()}.faults"), "a", encoding="utf-8") as out:
                out.write(f"{kind} {self.service} {operation}\n")

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        kind = self.draw()
        if kind is None:
            return None
        self.note(kind, model.name)
        if kind in ("lost", "kill"):
            context["eo_fault"] = kind  # applied first; after_call loses the answer or kills the process
            return None
        status, code = (
            (400, _THROTTLE.get(self.service, "ThrottlingException"))
            if kind == "throttle"
            else (500, _INTERNAL.get(self.service, "InternalError"))
        )
        error = {"Code": code, "Message": f"injected by exactly_once.core.faults ({kind})"}
        return _Response(status), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}

    def after_call(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        kind = context.pop("eo_fault", None)
        if kind is None or http_response.status_code >= 300:
            return
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        from botocore.exceptions import ReadTimeoutError

        raise ReadTimeoutError(endpoint_url=f"{self.service} (answer lost, injected)")


def spec() -> dict[str, Any] | None:
    raw = os.environ.get("EO_FAULTS")
    return json.loads(raw) if raw else None


def install(client: Any, service: str) -> Any:
    """Register the injector's hooks on ``client`` when ``EO_FAULTS`` is set; return the client."""
    chosen = spec()
    if chosen is None or service not in chosen.get("services", (service,)):
        return client
    injector = Injector(chosen, service)
    client.meta.events.register("before-call", injector.before_call, unique_id="eo-faults-before")
    client.meta.events.register("after-call", injector.after_call, unique_id="eo-faults-after")
    return client
