"""The template's functions, loaded once and invoked in-process like Lambda containers.

Every invocation runs in a container of ``devstack.containers``: per function at most its
template concurrency at once, each container with the one Postgres connection it keeps
(``exactly_once.core.db.connection`` answers it), the whole stack within an account limit.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from devstack.containers import Containers, bind_library_connections
from devstack.lambda_runtime import Handler, LambdaContext, add_code_paths, function_timeout
from devstack.template import Template

log = logging.getLogger("devstack.functions")


def per_thread_connections() -> None:
    """One Postgres connection per thread, as one per container on Lambda (the tests' fixed thread pools).

    Only for threads that live as long as the test: a thread per request would leak one each
    (the local stack uses ``Containers`` instead).
    """
    from exactly_once.core import db

    if getattr(db.connection, "per_thread", False):
        return
    local = threading.local()

    def connection() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = local.conn = db.connect()
        return conn

    connection.per_thread = True  # type: ignore[attr-defined]
    db.connection = connection


class FunctionHost:
    def __init__(self, template: Template, account_limit: int = 20, wait_s: float = 30.0) -> None:
        self.template = template
        concurrency = {name: template.function_concurrency(name) for name in template.functions()}
        self.containers = Containers(
            {name: n for name, n in concurrency.items() if n is not None}, account_limit, wait_s=wait_s
        )
        bind_library_connections()
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.stats: dict[str, dict[str, float]] = {}
        add_code_paths(template)

    def handler(self, function: str) -> Handler:
        with self._lock:  # imports are not thread-safe enough for two cold starts at once
            if function not in self._handlers:
                props = self.template.functions()[function]["Properties"]
                module_name, _, attr = str(props["Handler"]).rpartition(".")
                started = time.perf_counter()
                self._handlers[function] = getattr(importlib.import_module(module_name), attr)
                log.info("cold start %s in %.0f ms", function, (time.perf_counter() - started) * 1000)
            return self._handlers[function]

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        timeout = function_timeout(function, self.template)
        context = LambdaContext(function_name=function, timeout_s=timeout)
        started = time.perf_counter()
        stats = self.stats.setdefault(function, {"invocations": 0, "errors": 0, "seconds": 0.0})
        try:
            handler = self.handler(function)
            with self.containers.invocation(function):
                context.started = time.monotonic()  # the wait for a container is not the invocation's time
                return handler(event, context)
        except Exception:
            stats["errors"] += 1
            raise
        finally:
            elapsed = time.perf_counter() - started
            stats["invocations"] += 1
            stats["seconds"] += elapsed
            if elapsed > timeout:
                # Lambda would have killed this invocation; locally it ran to the end, so say so.
                log.warning("%s ran %.1f s, past its %.0f s timeout", function, elapsed, timeout)
