"""Lambda's concurrency model, locally: per function a bounded pool of containers, each with one connection.

On Lambda every concurrent invocation runs in a container of its own, and a container
keeps its Postgres connection across warm invocations (``exactly_once.core.db.connection``).
A function runs at most its concurrency at once (reserved concurrency, or the SQS event
source's ``MaximumConcurrency``); the account as a whole runs at most its account limit.
Here every function shares one process, so:

- an invocation takes an idle container of its function, or starts one while the function
  is under its concurrency and the account under its limit (an idle container of another
  function is reclaimed to make room, as Lambda reclaims idle environments);
- past that it waits for a container to come free, up to ``wait_s``; then it is throttled
  (``Throttled``: the gateway answers 429, a poller leaves the batch for a later receive);
- while it runs, ``db.connection()`` answers the container's own connection, opened on first
  use and closed when the container is reclaimed, goes idle for ``idle_s`` or the stack stops.

So the connections the stack holds never exceed the account limit, however many HTTP
clients keep their sockets open (the old per-request-thread connections leaked one per
thread and exhausted Postgres under a burst).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("devstack.containers")


class Throttled(Exception):
    """No container came free in time: Lambda would have throttled this invocation."""


@dataclass(eq=False)
class Container:
    function: str
    last_used: float = field(default_factory=time.monotonic)
    conn: Any = None
    invocations: int = 0

    def connection(self) -> Any:
        """The container's Postgres connection: opened on first use, reopened when broken."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            from exactly_once.core import db

            self.conn = db.connect()
        return self.conn

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except Exception:  # closing a broken connection must not fail the caller
                log.debug("closing a container's connection failed", exc_info=True)


_current = threading.local()


def current() -> Container | None:
    """The container the calling thread is running an invocation in, if any."""
    return getattr(_current, "container", None)


def _connection() -> Any:
    container = current()
    if container is None:
        raise RuntimeError("db.connection() outside an invocation: run the handler through Containers.invoke")
    return container.connection()


def _reset() -> None:
    container = current()
    if container is not None:
        container.reset()


def bind_library_connections() -> None:
    """Point the library's per-container connection at the running invocation's container."""
    from exactly_once.core import db

    db.connection = _connection
    db.reset = _reset


@dataclass
class Containers:
    """Every function's containers, within per-function concurrency and one account limit."""

    concurrency: dict[str, int]  # per function; a function not listed gets default_concurrency
    account_limit: int
    default_concurrency: int = 10
    wait_s: float = 30.0
    idle_s: float = 300.0
    _idle: dict[str, list[Container]] = field(default_factory=dict)
    _busy: dict[str, int] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    stats: dict[str, int] = field(default_factory=lambda: {"started": 0, "reclaimed": 0, "throttled": 0, "waited": 0})

    def limit(self, function: str) -> int:
        return max(1, min(self.concurrency.get(function, self.default_concurrency), self.account_limit))

    def total(self) -> int:
        return sum(self._busy.values()) + sum(len(c) for c in self._idle.values())

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                "account_limit": self.account_limit,
                "running": dict(self._busy),
                "idle": {f: len(c) for f, c in self._idle.items() if c},
                "connections": sum(1 for cs in self._idle.values() for c in cs if c.conn is not None)
                + sum(self._busy.values()),
                **self.stats,
            }

    @contextmanager
    def invocation(self, function: str, wait_s: float | None = None) -> Iterator[Container]:
        container = self._acquire(function, self.wait_s if wait_s is None else wait_s)
        _current.container = container
        try:
            yield container
        finally:
            _current.container = None
            self._release(container)

    def _acquire(self, function: str, wait_s: float) -> Container:
        deadline = time.monotonic() + wait_s
        reclaimed: list[Container] = []
        waited = False
        try:
            with self._cond:
                while True:
                    idle = self._idle.setdefault(function, [])
                    if idle:
                        container = idle.pop()
                        break
                    running = self._busy.get(function, 0)
                    if running < self.limit(function):
                        if self.total() >= self.account_limit:
                            victim = self._oldest_idle()
                            if victim is not None:
                                self._idle[victim.function].remove(victim)
                                reclaimed.append(victim)
                                self.stats["reclaimed"] += 1
                        if self.total() < self.account_limit:
                            container = Container(function)
                            self.stats["started"] += 1
                            break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.stats["throttled"] += 1
                        raise Throttled(f"{function}: {running} running, no container free within {wait_s:.0f} s")
                    if not waited:
                        self.stats["waited"] += 1
                        waited = True
                    self._cond.wait(remaining)
                self._busy[function] = self._busy.get(function, 0) + 1
                return container
        finally:
            for victim in reclaimed:  # outside the lock: closing a connection is a round trip
                victim.close()

    def _oldest_idle(self) -> Container | None:
        candidates = [c for cs in self._idle.values() for c in cs]
        return min(candidates, key=lambda c: c.last_used) if candidates else None

    def _release(self, container: Container) -> None:
        now = time.monotonic()
        container.last_used = now
        container.invocations += 1
        expired: list[Container] = []
        with self._cond:
            self._busy[container.function] -= 1
            self._idle.setdefault(container.function, []).append(container)
            for cs in self._idle.values():
                for c in list(cs):
                    if now - c.last_used > self.idle_s:
                        cs.remove(c)
                        expired.append(c)
            self._cond.notify_all()
        for c in expired:
            c.close()

    def close(self) -> None:
        """Close every idle container's connection (the stack is stopping)."""
        with self._cond:
            idle = [c for cs in self._idle.values() for c in cs]
            self._idle.clear()
        for c in idle:
            c.close()
