"""Fake provider APIs over real HTTP that record every call, so an effect can be counted.

Each provider lives in its own ``fake_<provider>.py`` with an ``install(fakes)``
that registers its routes. Control endpoints (for tests and ``make demo``):

- ``GET /_fake/calls``: every recorded call, refused ones with their ``refused`` reason;
- ``GET /_fake/effects``: ``[{kind, key, count}]`` of the delivered calls only;
- ``POST /_fake/reset``: forget calls, state and behaviours;
- ``POST /_fake/behaviour``: ``{"kind", "delay", "fail_times", "fail_status", "hang"}``
  makes the next calls of ``kind`` slow, fail or hang (a timeout seen from the client).

A fake checks a call as its provider would (the credential, the request's shape) before it
counts it: a call the provider would refuse is recorded with ``refused`` set and is never an
effect. Three counts: ``count`` (calls the provider accepted for processing, failed ones
included: attempts), ``delivered`` (of those, the ones that took effect: not failed by a
behaviour) and ``refused``. The expected credentials are ``credentials`` (the test values of
``tests/harness.py``; the local stack sets its own from ``env.local.json``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class LocalHTTPServer(ThreadingHTTPServer):
    """The local stack's HTTP servers: a listen backlog for a storm's many connections at once.

    A class attribute, because ``socketserver`` calls ``listen(request_queue_size)`` while the
    constructor binds: setting it on the instance afterwards leaves the backlog at 5.
    """

    request_queue_size = 128
    daemon_threads = True


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str]

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """urlencoded or multipart form fields (Unipile's send is multipart)."""
        ctype = self.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
            fields: dict[str, str] = {}
            for part in self.body.split(b"--" + boundary):
                head, _, value = part.partition(b"\r\n\r\n")
                m = re.search(rb'name="([^"]+)"', head)
                if m:
                    fields[m.group(1).decode()] = value.rsplit(b"\r\n", 1)[0].decode("utf-8", "replace")
            return fields
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Call:
    kind: str
    key: str
    method: str
    path: str
    body: str
    at: float = field(default_factory=time.time)
    refused: str | None = None  # why the provider would refuse it (credential, shape): not an effect
    failed: bool = False  # a behaviour answered it with an error: attempted, not delivered


@dataclass
class Behaviour:
    delay: float = 0.0
    fail_times: int = 0
    fail_status: int = 500
    hang: float = 0.0  # sleep this long before answering (past the client's timeout)
    hang_times: int = 0
    # Chaos storms (tests/chaos/): each call fails (fail_status) with probability fail_rate, or else hangs
    # (``hang`` seconds, the effect applied) with probability hang_rate, drawn from a hash of (seed, call n).
    fail_rate: float = 0.0
    hang_rate: float = 0.0
    seed: int = 0
    drawn: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    def draw(self) -> tuple[bool, bool]:
        """(fail, hang) for the next call under the seeded rates; each injected fault counted by kind."""
        digest = hashlib.blake2b(f"{self.seed}:{self.drawn}".encode(), digest_size=8).digest()
        self.drawn += 1
        roll = int.from_bytes(digest[:6]) / 2**48
        fail, hang = roll < self.fail_rate, self.fail_rate <= roll < self.fail_rate + self.hang_rate
        for kind, hit in ((str(self.fail_status), fail), ("hang", hang)):
            if hit:
                self.injected[kind] = self.injected.get(kind, 0) + 1
        return fail, hang


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[[FakeRequest], Reply]

# The credentials the fakes expect by default: tests/harness.py TEST_SECRETS's values.
DEFAULT_CREDENTIALS = {
    "LLM_API_KEY": "sk-test-llm",
    "WHATSAPP_ACCESS_TOKEN": "whatsapp-access-token-test",
    "UNIPILE_API_KEY": "unipile-api-key-test",
    "GRAPH_CLIENT_ID": "test-client-id",
    "GRAPH_CLIENT_SECRET": "test-client-secret",
}


class FakeProviders:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, credentials: dict[str, str] | None = None) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[Call] = []
        self.credentials = {**DEFAULT_CREDENTIALS, **(credentials or {})}
        self.state: dict[str, Any] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        self._server = LocalHTTPServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None
        from devstack import fake_graph

        fake_graph.install(self)
        for name in ("fake_whatsapp", "fake_unipile", "fake_openai", "fake_forward"):
            try:
                module = __import__(f"devstack.{name}", fromlist=["install"])
            except ImportError:
                continue
            module.install(self)

    # -- registration and recording -------------------------------------------------
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes.append((method, re.compile(pattern + r"$"), fn))
            return fn

        return register

    def record(self, kind: str, key: str, request: FakeRequest, *, refused: str | None = None) -> Call:
        """Record a call the provider accepted (``refused`` unset) or refused (``refused``: why)."""
        call = Call(kind, key, request.method, request.path, request.body.decode("utf-8", "replace")[:4000])
        call.refused = refused
        with self.lock:
            self.calls.append(call)
        return call

    def refuse(self, kind: str, key: str, request: FakeRequest, status: int, reason: str, body: Any) -> Reply:
        """Record a call the provider refuses (bad credential or shape) and answer it: never an effect."""
        self.record(kind, key, request, refused=f"{status} {reason}")
        return status, body

    def failed(self, call: Call) -> None:
        """A behaviour answered ``call`` with an error: it stays an attempt, it is not delivered."""
        with self.lock:
            call.failed = True

    def behave(self, kind: str) -> Behaviour | None:
        """Apply the behaviour set for ``kind``: returns it when this call must fail."""
        with self.lock:
            b = self.behaviours.get(kind)
            if b is None:
                return None
            hang = b.hang if b.hang_times > 0 else 0.0
            if b.hang_times > 0:
                b.hang_times -= 1
            failing = b.fail_times > 0
            if failing:
                b.fail_times -= 1
            if b.fail_rate or b.hang_rate:
                fail, hung = b.draw()
                failing, hang = failing or fail, hang or (b.hang if hung else 0.0)
        if b.delay:
            time.sleep(b.delay)
        if hang:
            time.sleep(hang)
        return b if failing else None

    def effects(self) -> list[dict[str, Any]]:
        """Delivered calls by kind and key: what the providers took effect on."""
        with self.lock:
            counts = Counter((c.kind, c.key) for c in self.calls if c.refused is None and not c.failed)
        return [{"kind": k, "key": key, "count": n} for (k, key), n in sorted(counts.items())]

    def count(self, kind: str, key: str | None = None) -> int:
        """Calls of ``kind`` the provider accepted for processing, failed ones included (attempts)."""
        with self.lock:
            return sum(1 for c in self.calls if c.kind == kind and c.refused is None and (key is None or c.key == key))

    def delivered(self, kind: str, key: str | None = None) -> int:
        """Calls of ``kind`` that took effect: accepted and not answered with a simulated failure."""
        with self.lock:
            return sum(
                1
                for c in self.calls
                if c.kind == kind and c.refused is None and not c.failed and (key is None or c.key == key)
            )

    def refused(self, kind: str, key: str | None = None) -> int:
        """Calls of ``kind`` the provider refused (credential or request shape)."""
        with self.lock:
            return sum(
                1 for c in self.calls if c.kind == kind and c.refused is not None and (key is None or c.key == key)
            )

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.behaviours.clear()
            for value in self.state.values():
                if hasattr(value, "clear"):
                    value.clear()

    # -- serving ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProviders:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        if parts.path.startswith("/_fake/"):
            return self._control(method, parts.path, body)
        for route_method, pattern, handler in self.routes:
            match = pattern.match(parts.path)
            if route_method == method and match:
                return handler(FakeRequest(method, parts.path, parse_qs(parts.query), headers, body, match))
        return 404, {"error": {"message": f"no fake for {method} {parts.path}"}}

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if path == "/_fake/calls":
            with self.lock:
                return 200, [asdict(c) for c in self.calls]
        if path == "/_fake/effects":
            return 200, self.effects()
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return 200, {"reset": True}
        if path == "/_fake/behaviour" and method == "POST":
            spec = json.loads(body)
            kind = spec.pop("kind")
            with self.lock:
                self.behaviours[kind] = Behaviour(**spec)
            return 200, {"kind": kind}
        if path == "/_fake/state" and method == "POST":
            spec = json.loads(body)
            setup = self.state.get("setup:" + spec.pop("provider"))
            if setup is None:
                return 404, {"error": "no such provider"}
            return 200, setup(spec)
        return 404, {"error": "unknown control path"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fakes = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, a keep-alive client waits for
            # its delayed ACK (~40 ms a call), which would dominate any "fake answers at once" run.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = fakes.dispatch(self.command, self.path, headers, body)
                status, payload = reply[0], reply[1]
                extra: dict[str, str] = dict(reply[2]) if len(reply) > 2 else {}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", extra.pop("content-type", "application/json"))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): the call is still recorded

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
